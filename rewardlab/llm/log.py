"""The exchange log: every LLM call (each attempt, failed ones included) as a row of the run store.

What is stored per exchange: the chat messages sent, the request parameters with their metadata
(card id, purpose, round, ...), the reply texts (a JSON list, one per sample), the model the endpoint
named, tokens in and out, latency, the error of a failed attempt, and the request key
(:meth:`~rewardlab.llm.base.LLMRequest.key`) by which :class:`~rewardlab.llm.replay.ReplayProvider`
finds the replies again.
"""

from __future__ import annotations

from typing import Any

from rewardlab.llm.base import LLMReply, LLMRequest
from rewardlab.store import ExchangeRecord, RunStore

REPLAY_PROVIDER = "replay"
"""Provider name of exchanges answered by replay: they cost nothing and are never replayed themselves."""


class ExchangeLog:
    """Writes LLM exchanges to a run store and finds them again by request key.

    :param store: the run store
    :param run_id: the run new exchanges belong to (``None``: outside a run)
    """

    def __init__(self, store: RunStore, run_id: str | None = None):
        self.store = store
        self.run_id = run_id

    def record(
        self,
        provider_name: str,
        request: LLMRequest,
        reply: LLMReply | None,
        error: str | None,
        *,
        latency_s: float | None = None,
        extra_params: dict[str, Any] | None = None,
    ) -> int:
        """Store one exchange; return its id.

        :param reply: the reply of a successful attempt, ``None`` for a failed one
        :param error: why the attempt failed (``None`` when it succeeded)
        :param latency_s: the attempt's duration when there is no reply to take it from
        :param extra_params: added to the stored parameters (e.g. ``replay_of``: the original's id)
        """
        params = request.params()
        if extra_params:
            params.update(extra_params)
        metadata = request.metadata or {}
        return self.store.add_exchange(
            provider=provider_name,
            model=reply.model if reply is not None and reply.model else request.model,
            messages=request.messages,
            params=params,
            texts=None if reply is None else list(reply.texts),
            run_id=self.run_id,
            request_key=request.key(),
            n=request.n,
            purpose=_str_or_none(metadata.get("purpose")),
            card_id=_str_or_none(metadata.get("card_id")),
            tokens_in=reply.tokens_in if reply is not None else None,
            tokens_out=reply.tokens_out if reply is not None else None,
            latency_s=reply.latency_s if reply is not None else latency_s,
            error=error,
        )

    def find_exchange(self, request_key: str, occurrence: int, run_id: str | None = None) -> ExchangeRecord | None:
        """The ``occurrence``-th (0-based, in call order) successful live exchange with this key.

        Failed attempts and exchanges answered by replay are skipped, so replaying a run (which logs
        its answers under the provider ``replay``) never changes what a later replay finds.

        :param run_id: look only in this run (``None``: the whole store)
        """
        found = self._live_replies(request_key, run_id)
        return found[occurrence] if 0 <= occurrence < len(found) else None

    def find(self, request_key: str, occurrence: int, run_id: str | None = None) -> list[str] | None:
        """The texts of :meth:`find_exchange`'s exchange, or ``None`` when there is none."""
        exchange = self.find_exchange(request_key, occurrence, run_id)
        return None if exchange is None else exchange.texts

    def count(self, request_key: str, run_id: str | None = None) -> int:
        """How many successful live exchanges the store holds for this key."""
        return len(self._live_replies(request_key, run_id))

    def _live_replies(self, request_key: str, run_id: str | None) -> list[ExchangeRecord]:
        return [
            e for e in self.store.find_exchanges(request_key, run_id=run_id)
            if e.error is None and e.texts is not None and e.provider != REPLAY_PROVIDER
        ]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
