"""The provider factory: an LLM provider by name (what ``--provider`` and a generation config say).

- ``openai`` (alias ``openai_compat``): any OpenAI-compatible endpoint (OpenAI, vLLM, ollama,
  llama.cpp) through the ``openai`` SDK; see :mod:`rewardlab.llm.openai_compat` for where the model,
  base URL and key come from;
- ``replay``: the stored replies of earlier exchanges, no network (deterministic re-runs, CI);
- ``offline``: a clearly labelled no-LLM baseline (retrieval of hand-written reference rewards),
  :mod:`rewardlab.text2reward.offline`.

It sits above :mod:`rewardlab.llm` (transport only) and beside the offline provider it builds.
"""

from __future__ import annotations

from typing import Any

from rewardlab.config import GenerationConfig
from rewardlab.errors import UserError
from rewardlab.llm.base import LLMProvider
from rewardlab.llm.log import ExchangeLog

PROVIDERS = ("openai", "openai_compat", "replay", "offline")
"""The names :func:`make_provider` accepts."""


def make_provider(
    name: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    log: ExchangeLog | None = None,
    timeout: float = 60.0,
    max_retries: int = 3,
    **kwargs: Any,
) -> LLMProvider:
    """The provider called ``name``.

    :param name: one of :data:`PROVIDERS`
    :param model: the model to ask (``openai``: else ``REWARDLAB_MODEL``; ``replay``: else the stored one)
    :param base_url: endpoint base URL (``openai`` only; else ``OPENAI_BASE_URL``)
    :param api_key: API key (``openai`` only; else ``OPENAI_API_KEY``)
    :param log: the exchange log every exchange is written to; ``replay`` also reads from it
    :param timeout: seconds per HTTP attempt (``openai`` only)
    :param max_retries: retries on transient failures (``openai`` only)
    :param kwargs: passed to the provider's class (``backoff_s`` for ``openai``; ``run_id`` for
        ``replay``; whatever ``OfflineProvider`` takes for ``offline``)
    :raises UserError: an unknown name, or what the provider needs is missing
    """
    if name in ("openai", "openai_compat"):
        from rewardlab.llm.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(
            model, base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, log=log, **kwargs
        )
    if name == "replay":
        from rewardlab.llm.replay import ReplayProvider

        if log is None:
            raise UserError("the replay provider needs a run store to replay from (an exchange log)")
        return ReplayProvider(log, model=model, **kwargs)
    if name == "offline":
        from rewardlab.text2reward.offline import OfflineProvider

        return OfflineProvider(log=log, **kwargs)
    raise UserError(f"unknown LLM provider {name!r}; choose one of: {', '.join(PROVIDERS)}")


def check_provider(config: GenerationConfig) -> None:
    """Refuse a generation config whose provider cannot be built (an unknown name, ``openai`` with no
    model), before a run is created: no request is made."""
    if config.provider not in PROVIDERS:
        raise UserError(f"unknown LLM provider {config.provider!r}; choose one of: {', '.join(PROVIDERS)}")
    if config.provider in ("openai", "openai_compat"):
        make_provider(config.provider, model=config.model, base_url=config.base_url, api_key=config.api_key,
                      timeout=config.timeout_s, max_retries=config.max_retries)
