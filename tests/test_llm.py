"""LLM providers: the real ``openai`` client over real HTTP against a scripted local server, every
exchange stored in a real SQLite run store, and replay answering from that store with no server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from llm_server import BROKEN_CODE, GOOD_CODE, PROSE, ScriptedLLMServer

from rewardlab.errors import UserError
from rewardlab.llm import ExchangeLog, LLMError, LLMRequest
from rewardlab.llm.openai_compat import OpenAICompatProvider
from rewardlab.llm.replay import ReplayProvider
from rewardlab.store import RunStore
from rewardlab.text2reward.providers import PROVIDERS, make_provider

RUN = "gen-20250101-000000"
CARD = "metaworld/drawer-open-v3"


@pytest.fixture(autouse=True)
def _no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own endpoint settings never leak into a test."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "REWARDLAB_MODEL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    with RunStore(tmp_path / "rewardlab.sqlite") as s:
        s.create_run(RUN, "gen", "")
        yield s


@pytest.fixture
def log(store: RunStore) -> ExchangeLog:
    return ExchangeLog(store, RUN)


def _request(prompt: str = "Write a dense reward for opening the drawer.", n: int = 1, purpose: str = "initial",
             seed: int | None = None, model: str = "test-model") -> LLMRequest:
    return LLMRequest(
        messages=[{"role": "system", "content": "You write reward code."}, {"role": "user", "content": prompt}],
        model=model, temperature=0.5, max_tokens=512, n=n, seed=seed,
        metadata={"card_id": CARD, "purpose": purpose, "round": 0},
    )


def _provider(server: ScriptedLLMServer, log: ExchangeLog | None, **kw: object) -> OpenAICompatProvider:
    kw = {"timeout": 5.0, "max_retries": 2, "backoff_s": 0.01, **kw}
    return OpenAICompatProvider("test-model", base_url=server.base_url, log=log, **kw)  # type: ignore[arg-type]


# -- the store's llm_exchanges table ------------------------------------------------------------------
def test_store_keeps_exchanges_with_their_key_and_finds_them_in_call_order(store: RunStore) -> None:
    messages = [{"role": "user", "content": "hi"}]
    first = store.add_exchange("openai", "m", messages, {"n": 2}, ["a", "b"], run_id=RUN, request_key="k1", n=2,
                               purpose="initial", card_id=CARD, tokens_in=3, tokens_out=4, latency_s=0.5)
    failed = store.add_exchange("openai", "m", messages, {}, None, run_id=RUN, request_key="k1", error="HTTP 500")
    other = store.add_exchange("openai", "m", messages, {}, ["c"], request_key="k2")
    assert first < failed < other
    found = store.find_exchanges("k1")
    assert [e.id for e in found] == [first, failed]
    assert found[0].texts == ["a", "b"] and found[0].messages == messages and found[0].params == {"n": 2}
    assert (found[0].n, found[0].purpose, found[0].card_id, found[0].tokens_in, found[0].tokens_out) == (2, "initial", CARD, 3, 4)
    assert found[1].texts is None and found[1].error == "HTTP 500"
    assert [e.id for e in store.exchanges(RUN)] == [first, failed]
    assert [e.id for e in store.exchanges()] == [first, failed, other]
    assert store.find_exchanges("k1", run_id="another-run") == []
    assert store.exchange(other).run_id is None  # type: ignore[union-attr]
    with pytest.raises(UserError, match="create the run before logging"):
        store.add_exchange("openai", "m", messages, {}, ["d"], run_id="no-such-run")


def test_exchange_log_records_everything_and_finds_the_nth_success(log: ExchangeLog, store: RunStore) -> None:
    from rewardlab.llm.base import LLMReply

    request = _request(n=2)
    log.record("openai", request, None, "attempt 1/3: HTTP 429", latency_s=0.1)
    first = log.record("openai", request, LLMReply(["x", "y"], "served-model", "openai", 10, 20, 1.5), None)
    second = log.record("openai", request, LLMReply(["z", "w"], "served-model", "openai", 11, 21, 1.0), None)
    row = store.exchange(first)
    assert row is not None
    assert row.messages == request.messages and row.texts == ["x", "y"] and row.model == "served-model"
    assert row.params["metadata"] == {"card_id": CARD, "purpose": "initial", "round": 0}
    assert row.params["temperature"] == 0.5 and row.params["model"] == "test-model"
    assert (row.request_key, row.n, row.purpose, row.card_id, row.run_id) == (request.key(), 2, "initial", CARD, RUN)
    assert (row.tokens_in, row.tokens_out, row.latency_s, row.error) == (10, 20, 1.5, None)
    assert log.find(request.key(), 0) == ["x", "y"]
    assert log.find(request.key(), 1) == ["z", "w"]
    assert log.find(request.key(), 2) is None
    assert log.find("no-such-key", 0) is None
    assert store.exchange(second).latency_s == 1.0  # type: ignore[union-attr]


# -- openai_compat over HTTP ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", [GOOD_CODE, BROKEN_CODE, PROSE], ids=["good-code", "code-with-errors", "prose"])
def test_reply_text_comes_back_verbatim_and_is_stored(text: str, llm_server: ScriptedLLMServer, log: ExchangeLog,
                                                      store: RunStore) -> None:
    llm_server.script(("code", text))
    request = _request(n=2, seed=7)
    reply = _provider(llm_server, log).complete(request)
    assert reply.texts == [text, text] and reply.provider == "openai" and reply.model == "scripted-model"
    sent = llm_server.requests[0]
    assert sent["messages"] == request.messages
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["n"], sent["seed"]) == ("test-model", 0.5, 512, 2, 7)
    assert "metadata" not in sent
    assert llm_server.headers[0]["authorization"] == "Bearer EMPTY"  # local servers need no key
    [row] = store.exchanges(RUN)
    assert row.id == reply.exchange_id and row.texts == [text, text] and row.error is None
    assert row.request_key == request.key() and row.latency_s is not None and row.latency_s > 0


def test_seed_is_left_out_when_not_given(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    llm_server.script(("code", "x"))
    _provider(llm_server, log).complete(_request())
    assert "seed" not in llm_server.requests[0]


def test_samples_come_back_in_choice_order(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    llm_server.script(("code", ["first", "second", "third"]))
    assert _provider(llm_server, log).complete(_request(n=3)).texts == ["first", "second", "third"]


def test_tokens_are_accounted_from_usage(llm_server: ScriptedLLMServer, log: ExchangeLog, store: RunStore) -> None:
    llm_server.script(("code", "x", {"prompt_tokens": 123, "completion_tokens": 45, "total_tokens": 168}),
                      ("code", "y", None))
    provider = _provider(llm_server, log)
    counted = provider.complete(_request())
    assert (counted.tokens_in, counted.tokens_out) == (123, 45)
    uncounted = provider.complete(_request())  # no usage in the reply: zero, not an error
    assert (uncounted.tokens_in, uncounted.tokens_out) == (0, 0)
    assert [(e.tokens_in, e.tokens_out) for e in store.exchanges(RUN)] == [(123, 45), (0, 0)]


def test_429_is_retried_after_the_servers_retry_after(llm_server: ScriptedLLMServer, log: ExchangeLog,
                                                      store: RunStore) -> None:
    llm_server.script(("status", 429, 0.3, "slow down"), ("code", GOOD_CODE))
    start = time.monotonic()
    reply = _provider(llm_server, log, backoff_s=0.01).complete(_request())
    assert time.monotonic() - start >= 0.3  # Retry-After, not the 0.01 s backoff
    assert reply.texts == [GOOD_CODE] and len(llm_server.requests) == 2
    failed, ok = store.exchanges(RUN)
    assert failed.texts is None and "HTTP 429" in failed.error and "slow down" in failed.error  # type: ignore[operator]
    assert failed.error.startswith("attempt 1/3")  # type: ignore[union-attr]
    assert ok.error is None and ok.id == reply.exchange_id and failed.request_key == ok.request_key


def test_500_is_retried_with_backoff(llm_server: ScriptedLLMServer, log: ExchangeLog, store: RunStore) -> None:
    llm_server.script(("status", 500), ("status", 503), ("code", "fine"))
    start = time.monotonic()
    assert _provider(llm_server, log, backoff_s=0.05).complete(_request()).texts == ["fine"]
    assert 0.15 <= time.monotonic() - start < 1.0  # 0.05 s, then 0.1 s (each plus up to 25% jitter)
    assert [e.error is None for e in store.exchanges(RUN)] == [False, False, True]


def test_persistent_500_gives_up_after_max_retries(llm_server: ScriptedLLMServer, log: ExchangeLog,
                                                   store: RunStore) -> None:
    llm_server.script(*[("status", 500, None, "model crashed")] * 3)
    with pytest.raises(LLMError, match=r"failed after 3 attempts \(2 retries\); last error: HTTP 500 .*model crashed"):
        _provider(llm_server, log, max_retries=2).complete(_request())
    assert len(llm_server.requests) == 3
    assert [e.error.split(":")[0] for e in store.exchanges(RUN)] == ["attempt 1/3", "attempt 2/3", "attempt 3/3"]  # type: ignore[union-attr]


def test_a_timeout_is_retried_then_reported(llm_server: ScriptedLLMServer, log: ExchangeLog, store: RunStore) -> None:
    llm_server.script(("sleep", 2), ("sleep", 2))
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"failed after 2 attempts \(1 retry\).*within the 0.2 s timeout"):
        _provider(llm_server, log, timeout=0.2, max_retries=1).complete(_request())
    assert time.monotonic() - start < 1.5
    assert len(llm_server.requests) == 2 and all("timeout" in e.error for e in store.exchanges(RUN))  # type: ignore[operator]


def test_a_timeout_then_success(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    llm_server.script(("sleep", 2), ("code", "in time"))
    assert _provider(llm_server, log, timeout=0.2).complete(_request()).texts == ["in time"]


@pytest.mark.parametrize(
    "body, content_type, says",
    [
        (b'{"choices": [{"index": 0, "message": {"role": "assi', "application/json", "not JSON"),
        (b"<html>Bad gateway</html>", "text/html", "not a chat completion"),
        (b'{"id": "x", "object": "chat.completion", "model": "m"}', "application/json", "no choices"),
        (b'{"choices": [{"index": 0, "message": {"role": "assistant"}}]}', "application/json", "no message content"),
    ],
    ids=["truncated-json", "html", "no-choices", "no-content"],
)
def test_a_malformed_body_is_retried_like_a_5xx_then_a_clear_error(body: bytes, content_type: str, says: str,
                                                                     llm_server: ScriptedLLMServer, log: ExchangeLog,
                                                                     store: RunStore) -> None:
    llm_server.script(("malformed", body, content_type), ("malformed", body, content_type))
    provider = _provider(llm_server, log, max_retries=1)
    shown: list[str] = []
    provider.on_retry = shown.append
    with pytest.raises(LLMError, match=rf"failed after 2 attempts.*malformed reply from {llm_server.base_url}"
                                       rf"/chat/completions: .*{says}"):
        provider.complete(_request())
    assert len(llm_server.requests) == 2
    assert len(shown) == 1 and "malformed reply" in shown[0] and "(attempt 2/2)" in shown[0]
    assert all(row.texts is None and "malformed reply" in row.error for row in store.exchanges(RUN))  # type: ignore[operator]


def test_a_malformed_body_then_a_good_one(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    llm_server.script(("malformed", b"<html>Bad gateway</html>", "text/html"), ("code", "second time"))
    assert _provider(llm_server, log).complete(_request()).texts == ["second time"]


def test_401_is_not_retried_and_says_what_to_do(llm_server: ScriptedLLMServer, log: ExchangeLog, store: RunStore) -> None:
    llm_server.script(("status", 401, None, "Incorrect API key provided"))
    with pytest.raises(LLMError) as info:
        _provider(llm_server, log, api_key="sk-wrong").complete(_request())
    message = str(info.value)
    assert "HTTP 401" in message and llm_server.base_url in message and "Incorrect API key" in message
    assert "OPENAI_API_KEY" in message and "--api-key" in message
    assert len(llm_server.requests) == 1 and llm_server.headers[0]["authorization"] == "Bearer sk-wrong"
    assert len(store.exchanges(RUN)) == 1


def test_404_names_the_model_and_base_url(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    llm_server.script(("status", 404, None, "model 'test-model' not found"))
    with pytest.raises(LLMError, match=r"HTTP 404 .*check the model name \(test-model\) and the base URL"):
        _provider(llm_server, log).complete(_request())
    assert len(llm_server.requests) == 1


def test_an_unreachable_server_is_retried_then_reported(log: ExchangeLog, store: RunStore) -> None:
    with ScriptedLLMServer() as server:
        base_url = server.base_url
    provider = OpenAICompatProvider("test-model", base_url=base_url, timeout=2.0, max_retries=1, backoff_s=0.01, log=log)
    with pytest.raises(LLMError, match=r"failed after 2 attempts .*cannot connect to http://127\.0\.0\.1"):
        provider.complete(_request())
    assert len(store.exchanges(RUN)) == 2


# -- configuration ----------------------------------------------------------------------------------
def test_settings_come_from_arguments_before_the_environment(llm_server: ScriptedLLMServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("REWARDLAB_MODEL", "env-model")
    from_env = OpenAICompatProvider()
    assert (from_env.model, from_env.base_url) == ("env-model", llm_server.base_url)
    llm_server.script(("code", "x"), ("code", "y"))
    from_env.complete(_request(model=from_env.model))
    assert llm_server.headers[0]["authorization"] == "Bearer sk-from-env"
    from_args = OpenAICompatProvider("arg-model", base_url=llm_server.base_url, api_key="sk-arg")
    from_args.complete(_request(model=from_args.model))
    assert llm_server.requests[1]["model"] == "arg-model" and llm_server.headers[1]["authorization"] == "Bearer sk-arg"


def test_real_openai_without_a_key_is_refused_up_front() -> None:
    with pytest.raises(LLMError, match=r"set OPENAI_API_KEY or pass --api-key"):
        OpenAICompatProvider("gpt-4o")


def test_a_model_is_required(llm_server: ScriptedLLMServer) -> None:
    with pytest.raises(LLMError, match=r"--model.*REWARDLAB_MODEL"):
        OpenAICompatProvider(base_url=llm_server.base_url)


def test_make_provider_builds_each_provider_by_name(llm_server: ScriptedLLMServer, log: ExchangeLog) -> None:
    for name in ("openai", "openai_compat"):
        provider = make_provider(name, model="m", base_url=llm_server.base_url, log=log, timeout=3, max_retries=1,
                                 backoff_s=0.5)
        assert isinstance(provider, OpenAICompatProvider)
        assert (provider.timeout, provider.max_retries, provider.backoff_s, provider.log) == (3.0, 1, 0.5, log)
    assert isinstance(make_provider("replay", log=log), ReplayProvider)
    with pytest.raises(UserError, match="replay provider needs a run store"):
        make_provider("replay")
    with pytest.raises(UserError, match=r"unknown LLM provider 'gpt'; choose one of: openai, openai_compat, replay, offline"):
        make_provider("gpt")
    assert set(PROVIDERS) == {"openai", "openai_compat", "replay", "offline"}


def test_make_provider_offline(log: ExchangeLog) -> None:
    pytest.importorskip("rewardlab.text2reward.offline")
    provider = make_provider("offline", log=log)
    assert provider.name == "offline"


# -- replay -------------------------------------------------------------------------------------------
def _live_generation(store: RunStore) -> tuple[list[LLMRequest], list[list[str]]]:
    """Three calls, two of them the same request (same key), answered by a live server."""
    requests = [_request("open the drawer"), _request("open the drawer"), _request("fix this error", purpose="execution_error")]
    with ScriptedLLMServer([("status", 500), ("code", "sample A"), ("code", "sample B"), ("code", ["fix 1", "fix 2"])]) as server:
        provider = _provider(server, ExchangeLog(store, RUN))
        texts = [provider.complete(r).texts for r in requests]
    assert texts == [["sample A"], ["sample B"], ["fix 1", "fix 2"]]
    return requests, texts


def test_replay_returns_the_same_texts_in_the_same_order_without_a_server(tmp_path: Path) -> None:
    path = tmp_path / "rewardlab.sqlite"
    with RunStore(path) as store:
        store.create_run(RUN, "gen", "")
        requests, texts = _live_generation(store)
    for replay_run in ("replay-1", "replay-2"):  # a store reopened later, replayed twice
        with RunStore(path) as store:
            store.create_run(replay_run, "gen", "")
            provider = make_provider("replay", log=ExchangeLog(store, replay_run))
            assert provider.model == "test-model"  # what the live run asked for
            replies = [provider.complete(r) for r in requests]
            assert [r.texts for r in replies] == texts
            assert all(r.provider == "replay" for r in replies)
            assert (replies[0].tokens_in, replies[0].tokens_out) == (7, 2)  # the original's accounting
            rows = store.exchanges(replay_run)
            assert [e.provider for e in rows] == ["replay"] * 3 and [e.texts for e in rows] == texts
            originals = [e.id for e in store.exchanges(RUN) if e.error is None]
            assert [e.params["replay_of"] for e in rows] == originals
            with pytest.raises(LLMError, match=r"asked 3 times and the store holds 2"):
                provider.complete(requests[0])


def test_a_replay_miss_says_what_was_asked_and_what_to_do(log: ExchangeLog) -> None:
    request = _request("never asked", purpose="reflection", model="gpt-4o")
    with pytest.raises(LLMError) as info:
        ReplayProvider(log).complete(request)
    message = str(info.value)
    assert message.startswith("replay: no stored reply for this request (model gpt-4o, purpose reflection, key ")
    assert request.key()[:12] in message and message.endswith("re-run with a live provider first")


def test_replay_skips_failed_attempts_and_can_be_limited_to_one_run(store: RunStore) -> None:
    requests, texts = _live_generation(store)
    store.create_run("other", "gen", "")
    other_log = ExchangeLog(store, "other")
    from rewardlab.llm.base import LLMReply

    other_log.record("openai", requests[2], LLMReply(["other fix"], "m", "openai"), None)
    assert ReplayProvider(other_log, run_id="other").complete(requests[2]).texts == ["other fix"]
    assert ReplayProvider(other_log, run_id=RUN).complete(requests[2]).texts == texts[2]
    with pytest.raises(LLMError, match="in run other"):
        ReplayProvider(other_log, run_id="other").complete(requests[0])
