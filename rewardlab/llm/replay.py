"""The ``replay`` provider: answers from the exchange log, with no network.

A request is looked up by its key (:meth:`~rewardlab.llm.base.LLMRequest.key`: the hash of what would
be sent, metadata excluded). The same request may have been made several times (several samples with
one prompt, or one prompt in several rounds), so the provider counts, per key, how many times it has
answered it: the k-th time a request is made it gets the replies the k-th successful live exchange
with that key received. Re-running a finished generation with the same inputs therefore reproduces it
exactly, call for call.

Replayed answers are logged too, under the provider name ``replay`` (with ``replay_of`` = the
original exchange's id in their parameters), so a replayed run has its own complete record of
exchanges for program lineage. Lookups skip those rows, so replaying never changes what a later replay
finds, and token sums over live providers never count an exchange twice. The reply carries the
original's token counts (a budget on tokens stops a replayed run where it stopped the original) and
its own, near-zero, latency.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from rewardlab.llm.base import LLMError, LLMReply, LLMRequest
from rewardlab.llm.log import REPLAY_PROVIDER, ExchangeLog


class ReplayProvider:
    """Answers each request with the stored replies of its next occurrence in the exchange log.

    :param log: the exchange log to read from; replayed exchanges are written to it too (to its run)
    :param run_id: replay only this run's exchanges (``None``: any run in the store, oldest first)
    :param model: the model requests should name (what ``--model`` said when the exchanges were
        made); default: the model of the latest live exchange stored (in ``run_id``). Replay answers
        whatever model a request names; this is only what callers build requests with.
    :param record: log replayed answers (a resumed run re-reads its own exchanges: it does not log
        them twice)
    """

    name = REPLAY_PROVIDER

    def __init__(self, log: ExchangeLog, run_id: str | None = None, model: str | None = None, record: bool = True):
        self.log = log
        self.run_id = run_id
        self.record = record
        self.model = model or self._stored_model()
        self._served: Counter[str] = Counter()
        self._lock = threading.Lock()

    def complete(self, request: LLMRequest) -> LLMReply:
        """The stored reply for this request's next occurrence, or :class:`LLMError` when there is none."""
        start = time.monotonic()
        key = request.key()
        with self._lock:
            occurrence = self._served[key]
            original = self.log.find_exchange(key, occurrence, run_id=self.run_id)
            if original is None or original.texts is None:
                raise LLMError(self._miss(request, key, occurrence))
            self._served[key] += 1
        reply = LLMReply(
            texts=list(original.texts),
            model=original.model,
            provider=self.name,
            tokens_in=original.tokens_in or 0,
            tokens_out=original.tokens_out or 0,
            latency_s=time.monotonic() - start,
        )
        if self.record:
            reply.exchange_id = self.log.record(self.name, request, reply, None, extra_params={"replay_of": original.id})
        else:
            reply.exchange_id = original.id
        return reply

    def has(self, request: LLMRequest) -> bool:
        """Whether the log holds a reply for this request's next occurrence."""
        key = request.key()
        with self._lock:
            found = self.log.find_exchange(key, self._served[key], run_id=self.run_id)
        return found is not None and found.texts is not None

    def _stored_model(self) -> str | None:
        live = [e for e in self.log.store.exchanges(self.run_id) if e.provider != REPLAY_PROVIDER]
        return str(live[-1].params.get("model") or live[-1].model) if live else None

    def _miss(self, request: LLMRequest, key: str, occurrence: int) -> str:
        purpose = (request.metadata or {}).get("purpose", "unknown")
        stored = self.log.count(key, run_id=self.run_id)
        where = f" in run {self.run_id}" if self.run_id is not None else ""
        if stored:
            times = f"; it was asked {occurrence + 1} times and the store{where} holds {stored}"
        else:
            times = f"; none stored{where}" if where else ""
        return (
            f"replay: no stored reply for this request (model {request.model}, purpose {purpose}, "
            f"key {key[:12]}…{times}); re-run with a live provider first"
        )
