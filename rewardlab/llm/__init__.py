"""LLM transport: one request in, the reply texts out, every exchange logged in the run store.

- :mod:`~rewardlab.llm.openai_compat`: any OpenAI-compatible endpoint (OpenAI, vLLM, ollama,
  llama.cpp) through the ``openai`` SDK;
- :mod:`~rewardlab.llm.replay`: the stored replies of earlier exchanges, no network (exact re-runs);
- :mod:`~rewardlab.llm.log`: the exchange log.

Providers are built by name in :func:`rewardlab.text2reward.providers.make_provider`, above this
package, since the ``offline`` provider (the labelled no-LLM baseline) belongs to the generation layer.
"""

from __future__ import annotations

from rewardlab.llm.base import LLMError, LLMProvider, LLMReply, LLMRequest
from rewardlab.llm.log import ExchangeLog

__all__ = ["ExchangeLog", "LLMError", "LLMProvider", "LLMReply", "LLMRequest"]
