"""E2CL: exploration-based error-correction learning for embodied agents (Wang et al., Findings of EMNLP
2024, arXiv:2409.03256) on rewardlab's household environment.

- :mod:`~rewardlab.e2cl.tokenizer`, :mod:`~rewardlab.e2cl.model`: a word tokenizer from the env's
  vocabulary and a small encoder-decoder trained from scratch;
- :mod:`~rewardlab.e2cl.agents`: the three skills (plan, predict feedback, correct) behind one interface;
  :mod:`~rewardlab.e2cl.llm`: the same interface for an LLM with retrieved corrections;
- :mod:`~rewardlab.e2cl.datasets`, :mod:`~rewardlab.e2cl.exploration`: records and JSONL; expert,
  teacher-guided and teacher-free data collection;
- :mod:`~rewardlab.e2cl.sft`: the training objective; :mod:`~rewardlab.e2cl.inference`: plain and
  speculative inference with logging; :mod:`~rewardlab.e2cl.trainer`: the ``e2cl`` trainer;
  :mod:`~rewardlab.e2cl.report`: success and executability with confidence intervals per split.
"""
