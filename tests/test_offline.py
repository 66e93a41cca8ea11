"""The offline no-LLM baseline provider (rewardlab/text2reward/offline.py)."""

from __future__ import annotations

import re

import pytest

from rewardlab.cards import list_cards, load_card
from rewardlab.checks import check_program
from rewardlab.llm.base import LLMError, LLMRequest
from rewardlab.program import load_program
from rewardlab.text2reward.extract import extract_program
from rewardlab.text2reward.offline import HEADER, OfflineProvider, adapt_reference, generic_template
from rewardlab.text2reward.retrieval import rank_examples, reference_pool

CARDS = [c for c in list_cards() if c.simulator in ("metaworld", "mujoco")]
ORIGIN = re.compile(r"^# offline baseline \(no LLM\): adapted from the hand-written reference reward of (\S+)$")


def request(card_id: str, n: int = 1, purpose: str = "initial", messages: list | None = None) -> LLMRequest:
    return LLMRequest(messages=messages or [{"role": "user", "content": "write a reward"}], model="offline",
                      n=n, metadata={"card_id": card_id, "purpose": purpose})


def origin_of(source: str) -> str | None:
    m = ORIGIN.match(source.split("\n", 1)[0])
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def provider() -> OfflineProvider:
    return OfflineProvider()


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.id)
def test_offline_reply_passes_the_checks_for_every_card(provider: OfflineProvider, card) -> None:
    reply = provider.complete(request(card.id))
    assert reply.provider == "offline" and len(reply.texts) == 1
    text = reply.texts[0]
    assert text.startswith("Offline baseline: no language model was called.")
    assert text.count("```python") == 1
    source = extract_program(text)
    first = source.split("\n", 1)[0]
    assert first.startswith("# offline baseline (no LLM):")
    assert origin_of(source) != card.id  # never the target's own reference
    program = load_program(source)
    assert not program.is_reference
    report = check_program(program, card)
    assert report.ok, (report.rule, report.message, report.line)


def test_metaworld_uses_the_most_similar_reference_as_is(provider: OfflineProvider) -> None:
    card = load_card("metaworld/drawer-open-v3")
    source = extract_program(provider.complete(request(card.id)).texts[0])
    assert source.split("\n", 1)[0] == HEADER.format(source="metaworld/drawer-close-v3")
    assert "renamed" not in source
    body = source[source.index("def compute_dense_reward"):]
    reference = load_card("metaworld/drawer-close-v3").reference_reward_path().read_text()
    assert body.strip() == reference[reference.index("def compute_dense_reward"):].strip()


def test_sample_i_uses_the_i_th_fitting_example(provider: OfflineProvider) -> None:
    card = load_card("metaworld/drawer-open-v3")
    reply = provider.complete(request(card.id, n=3))
    got = [origin_of(extract_program(t)) for t in reply.texts]
    ranked = [ex.card_id for ex in rank_examples(card)][:3]
    assert got == ranked == ["metaworld/drawer-close-v3", "metaworld/window-open-v3", "metaworld/door-close-v3"]
    shifted = OfflineProvider(k_offset=1).complete(request(card.id, n=2))
    assert [origin_of(extract_program(t)) for t in shifted.texts] == ranked[1:3]


def test_follow_ups_return_the_next_ranked_example(provider: OfflineProvider) -> None:
    card = load_card("metaworld/window-close-v3")
    first = provider.complete(request(card.id)).texts[0]
    assert origin_of(extract_program(first)) == "metaworld/window-open-v3"
    conversation = [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                    {"role": "assistant", "content": first}, {"role": "user", "content": "it failed"}]
    for purpose in ("error", "reflection", "human"):
        follow = provider.complete(request(card.id, purpose=purpose, messages=conversation)).texts[0]
        assert origin_of(extract_program(follow)) == "metaworld/door-close-v3"
        assert "cannot read" in follow


def test_fields_are_renamed_when_the_target_lacks_them() -> None:
    ant, cheetah = load_card("mujoco/Ant-v5"), load_card("mujoco/HalfCheetah-v5")
    example = next(ex for ex in reference_pool() if ex.card_id == cheetah.id)
    adapted = adapt_reference(example, ant)
    assert adapted is not None and adapted.renames == {"torso.x_velocity": "self.torso.velocity[..., 0]"}
    code = adapted.source.split('"""')[-1]
    assert "self.torso.velocity[..., 0]" in code and "self.torso.x_velocity" not in code
    walker = next(ex for ex in reference_pool() if ex.card_id == "mujoco/Walker2d-v5")
    assert adapt_reference(walker, ant) is None  # Ant has no torso angle or pitch
    hopper = next(ex for ex in reference_pool() if ex.card_id == "mujoco/Hopper-v5")
    assert adapt_reference(hopper, load_card("mujoco/Walker2d-v5")) is None  # two legs: `leg` is ambiguous


def test_a_reference_reading_a_missing_field_is_skipped() -> None:
    reacher = next(ex for ex in reference_pool() if ex.card_id == "mujoco/Reacher-v5")
    assert adapt_reference(reacher, load_card("metaworld/reach-v3")) is None


@pytest.mark.parametrize("card_id", ["mujoco/InvertedPendulum-v5", "mujoco/Reacher-v5"])
def test_no_fitting_reference_gives_a_labelled_generic_template(provider: OfflineProvider, card_id: str) -> None:
    source = extract_program(provider.complete(request(card_id)).texts[0])
    assert source.startswith(f"# offline baseline (no LLM): no hand-written reference reward fits {card_id}")


@pytest.mark.parametrize(("card_id", "term", "absent"), [
    ("mujoco/InvertedPendulum-v5", '"alive"', "step cost"),  # survived: living longer is the task
    ("household/train", '"step"', "np.square(action)"),  # an event that ends the episode; integer actions
])
def test_the_generic_template_fits_the_success_rule_and_action_space(card_id: str, term: str, absent: str) -> None:
    # found by a user: the household got an alive bonus (pays for never finishing) and squared verb indices

    source = generic_template(load_card(card_id)).source
    assert term in source and absent not in source.lower()
    assert check_program(source, load_card(card_id)).ok


def test_missing_card_id_is_an_llm_error(provider: OfflineProvider) -> None:
    with pytest.raises(LLMError, match="card_id"):
        provider.complete(LLMRequest(messages=[], model="offline"))


class _FakeLog:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def record(self, provider, request, reply, error):
        self.calls.append((provider, request, reply, error))
        return len(self.calls)


def test_every_exchange_is_logged() -> None:
    log = _FakeLog()
    provider = OfflineProvider(log=log)
    reply = provider.complete(request("metaworld/push-v3", n=2))
    assert reply.exchange_id == 1
    name, req, rep, error = log.calls[0]
    assert name == "offline" and req.metadata["card_id"] == "metaworld/push-v3" and rep is reply and error is None


def test_exchange_is_stored_in_the_run_store(tmp_path) -> None:
    log_module = pytest.importorskip("rewardlab.llm.log")
    from rewardlab.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    reply = OfflineProvider(log=log_module.ExchangeLog(store)).complete(request("metaworld/reach-v3"))
    stored = store.exchanges()
    assert [e.id for e in stored] == [reply.exchange_id]
    assert stored[0].provider == "offline" and stored[0].texts == reply.texts
    assert stored[0].card_id == "metaworld/reach-v3" and stored[0].purpose == "initial"
