"""What every LLM provider offers: one request in, the reply texts out, every exchange logged.

Providers: ``openai_compat`` (the ``openai`` SDK over HTTP: OpenAI, vLLM, ollama, llama.cpp servers),
``replay`` (answers from the exchange log, for deterministic re-runs and CI) and ``offline`` (a clearly
labelled no-LLM baseline: retrieval of hand-written reference rewards).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rewardlab.errors import UserError


class LLMError(UserError):
    """The provider could not produce a reply (after its bounded retries); the message says why."""


@dataclass
class LLMRequest:
    """One chat request.

    :param messages: chat messages, ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``
    :param model: model name as the endpoint knows it
    :param temperature: sampling temperature
    :param max_tokens: cap on the reply length
    :param n: number of samples
    :param seed: sampling seed, where the endpoint honours it
    :param metadata: what the request is for (card id, purpose, round, sample); logged, never sent
    """

    messages: list[dict[str, str]]
    model: str
    temperature: float = 0.7
    max_tokens: int = 2048
    n: int = 1
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Stable hash of what is sent (not the metadata): replay finds stored replies by it."""
        sent = {"messages": self.messages, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "n": self.n, "seed": self.seed}
        return hashlib.sha256(json.dumps(sent, sort_keys=True).encode()).hexdigest()

    def params(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("messages")
        return d


@dataclass
class LLMReply:
    """The reply: one text per sample, with accounting."""

    texts: list[str]
    model: str
    provider: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    exchange_id: int | None = None


class LLMProvider(Protocol):
    """``complete`` returns the reply or raises :class:`LLMError`; it logs every exchange it makes."""

    name: str

    def complete(self, request: LLMRequest) -> LLMReply: ...
