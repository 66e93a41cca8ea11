"""Text2Reward-style reward generation: prompts, few-shot retrieval, code extraction, and the offline
no-LLM baseline provider.

- :mod:`~rewardlab.text2reward.prompts`: :class:`PromptBuilder` renders ``prompts/*.j2`` into chat
  messages (initial zero-/few-shot, execution-error feedback, training reflection, human feedback);
- :mod:`~rewardlab.text2reward.retrieval`: :func:`retrieve_examples`, the reference rewards most
  similar to a task by instruction (TF-IDF cosine, leave-one-out);
- :mod:`~rewardlab.text2reward.extract`: :func:`extract_program`, the reward program in a reply;
- :mod:`~rewardlab.text2reward.offline`: :class:`OfflineProvider`, adapted reference rewards as
  replies, clearly labelled, for running the loop with no endpoint.
"""

from __future__ import annotations

from rewardlab.text2reward.extract import CodeExtractionError, extract_program
from rewardlab.text2reward.prompts import PromptBuilder, TrainingStats
from rewardlab.text2reward.retrieval import Example, reference_pool, retrieve_examples

__all__ = ["CodeExtractionError", "Example", "PromptBuilder", "TrainingStats", "extract_program",
           "reference_pool", "retrieve_examples"]
