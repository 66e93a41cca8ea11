"""Few-shot retrieval from the reference-reward pool (rewardlab/text2reward/retrieval.py)."""

from __future__ import annotations

import pytest

from rewardlab.cards import list_cards, load_card
from rewardlab.program import load_program
from rewardlab.text2reward.retrieval import few_shot_pool, reference_pool, retrieve_examples, tfidf_similarity


def test_pool_is_every_card_with_a_reference_reward() -> None:
    with_reference = {c.id for c in list_cards() if c.reference_reward_path() is not None}
    pool = reference_pool()
    assert {ex.card_id for ex in pool} == with_reference
    assert all("def compute_dense_reward" in ex.source for ex in pool)


@pytest.mark.parametrize("card", list_cards(), ids=lambda c: c.id)
def test_retrieval_is_leave_one_out(card) -> None:
    examples = retrieve_examples(card, k=len(few_shot_pool()))
    assert card.id not in {ex.card_id for ex in examples}
    # tasks without a reference (gridworlds) have nothing of their own to leave out
    assert len(examples) == len(few_shot_pool()) - sum(ex.card_id == card.id for ex in few_shot_pool())


def test_the_target_is_included_only_when_asked() -> None:
    card = load_card("metaworld/drawer-open-v3")
    top = retrieve_examples(card, k=1, exclude_self=False)
    assert top[0].card_id == card.id and top[0].score == pytest.approx(1.0)


def test_drawer_close_ranks_first_for_drawer_open() -> None:
    # Same object (drawer) and the same goal wording; "open" is shared with window-open, which
    # ranks second.
    examples = retrieve_examples(load_card("metaworld/drawer-open-v3"), k=3)
    assert [ex.card_id for ex in examples[:2]] == ["metaworld/drawer-close-v3", "metaworld/window-open-v3"]
    assert examples[0].score > examples[1].score > examples[2].score


@pytest.mark.parametrize("pair", [("metaworld/window-close-v3", "metaworld/window-open-v3"),
                                  ("metaworld/handle-press-v3", "metaworld/handle-press-side-v3"),
                                  ("mujoco/Hopper-v5", "mujoco/Walker2d-v5")])
def test_sibling_tasks_retrieve_each_other(pair) -> None:
    assert retrieve_examples(load_card(pair[0]))[0].card_id == pair[1]


def test_k_sets_the_number_of_examples() -> None:
    card = load_card("metaworld/push-v3")
    assert retrieve_examples(card, k=0) == []
    assert len(retrieve_examples(card, k=3)) == 3
    assert [e.card_id for e in retrieve_examples(card, k=2)] == [e.card_id for e in retrieve_examples(card, k=3)[:2]]
    with pytest.raises(ValueError):
        retrieve_examples(card, k=-1)


def test_same_family_comes_first_by_default() -> None:
    card = load_card("mujoco/HalfCheetah-v5")
    examples = retrieve_examples(card, k=8)
    families = [ex.family for ex in examples]
    assert families[:5] == ["mujoco"] * 5 and "mujoco" not in families[5:]  # then other families (metaworld, maniskill)
    only = retrieve_examples(card, k=20, family="only")
    assert {ex.family for ex in only} == {"mujoco"} and len(only) == 5


def test_instruction_override_changes_the_ranking() -> None:
    card = load_card("metaworld/reach-v3")
    default = retrieve_examples(card, k=1)[0].card_id
    override = retrieve_examples(card, k=1, instruction="slide the window handle sideways")[0].card_id
    assert override.startswith("metaworld/window-") and override != default


def test_prompt_source_does_not_call_itself_a_reference() -> None:
    for ex in reference_pool():
        assert load_program(ex.source).is_reference
        assert not load_program(ex.prompt_source).is_reference


def test_tfidf_similarity_basics() -> None:
    scores = tfidf_similarity(["drawer", "open"], [["drawer", "open"], ["drawer", "close"], ["window"]])
    assert scores[0] == pytest.approx(1.0)
    assert scores[0] > scores[1] > scores[2] == 0.0
