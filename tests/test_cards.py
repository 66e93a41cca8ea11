"""Env cards: every shipped card matches its live env; bad cards give one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.cards import card_index, load_card, parse_success, render_stubs
from rewardlab.errors import UserError
from rewardlab.sims import make_env

CARD_IDS = sorted(card_index())
MUJOCO = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Reacher-v5", "InvertedPendulum-v5"]
METAWORLD = ["button-press-v3", "door-close-v3", "door-unlock-v3", "drawer-open-v3", "drawer-close-v3",
             "handle-press-v3", "handle-press-side-v3", "sweep-into-v3", "window-open-v3", "window-close-v3",
             "reach-v3", "push-v3", "pick-place-v3"]


def test_every_required_task_has_a_card_and_a_reference_reward() -> None:
    expected = [f"mujoco/{t}" for t in MUJOCO] + [f"metaworld/{t}" for t in METAWORLD]
    missing = [t for t in expected if t not in CARD_IDS]
    assert not missing, f"cards missing: {missing}"
    for card_id in expected:
        card = load_card(card_id)
        ref = card.reference_reward_path()
        assert ref is not None, f"{card_id} has no reference reward"
        assert "hand-written reference reward" in ref.read_text().lower(), f"{ref} is not labelled as hand-written"


@pytest.mark.parametrize("card_id", CARD_IDS)
def test_card_matches_live_env(card_id: str) -> None:
    card = load_card(card_id)
    env = make_env(card, seed=0)
    try:
        card.check_live(env, steps=5)
    finally:
        env.close()


def test_metaworld_cards_use_text2reward_names() -> None:
    for task in METAWORLD:
        fields = load_card(f"metaworld/{task}").fields()
        for name in ("robot.ee_position", "robot.gripper_openness", "obj1.position", "goal_position"):
            assert name in fields, f"{task} lacks {name}"


def test_mujoco_cards_expose_fields_the_observation_hides() -> None:
    fields = load_card("mujoco/HalfCheetah-v5").fields()
    assert any(spec.kind == "sim" for spec in fields.values())


def test_card_check_detects_a_wrong_slice(tmp_path: Path, toy_card_path: Path) -> None:
    bad = toy_card_path.read_text().replace('source: "obs[1]"', 'source: "obs[1:3]"')
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    card = load_card(path)
    with pytest.raises(UserError, match="pole.angle"):
        card.check_live(make_env(card, seed=0))


def test_card_check_detects_wrong_action_bounds(tmp_path: Path, toy_card_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(toy_card_path.read_text().replace("low: -3, high: 3", "low: -1, high: 1"))
    card = load_card(path)
    with pytest.raises(UserError, match="action low"):
        card.check_live(make_env(card, seed=0))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("episode_steps: 1000", "episode_steps: -5"), "episode_steps"),
        (("simulator: mujoco", "simulator: bullet"), "simulator"),
        (("instruction: Keep the pole upright.", "instructions: typo"), "instructions"),
        (('source: "obs[0]"', 'source: "os.system(1)"'), "may only start from"),
        (('source: "obs[0]"', 'source: "data.__class__"'), "private attribute"),
        (("success: survived", "success: whenever"), "success"),
        (("id: test/toy-pendulum", "id: [oops"), "not valid YAML"),
    ],
)
def test_malformed_card_gives_one_clear_line(tmp_path: Path, toy_card_path: Path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(toy_card_path.read_text().replace(*edit))
    with pytest.raises(UserError) as info:
        load_card(path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(path) in text


def test_unknown_id_suggests_close_matches() -> None:
    with pytest.raises(UserError, match="did you mean metaworld/drawer-open-v3"):
        load_card("metaworld/drawer-opn-v3")


def test_stubs_render_every_field_with_batch_shapes() -> None:
    card = load_card("metaworld/drawer-open-v3")
    stubs = render_stubs(card)
    assert "class Robot:" in stubs and "ee_position: np.ndarray  # (B, 3), m" in stubs
    assert "goal_position: np.ndarray" in stubs and "# action: np.ndarray (B, 4)" in stubs
    compile(stubs, "<stubs>", "exec")  # the stubs are valid Python


def test_success_rules_parse() -> None:
    assert parse_success("info.success").kind == "info"
    assert parse_success("survived").kind == "survived"
    rule = parse_success("target.distance < 0.02", {"target.distance"})
    assert (rule.kind, rule.key, rule.op, rule.value) == ("threshold", "target.distance", "<", 0.02)
    with pytest.raises(ValueError):
        parse_success("target.distance < 0.02", {"other"})


def test_state_view_is_read_only_and_shaped_by_the_card() -> None:
    from rewardlab.state import StateExtractor

    card = load_card("metaworld/drawer-open-v3")
    ex = StateExtractor(card)
    obs = np.arange(39 * 4, dtype=float).reshape(4, 39)
    view = ex.view(ex.batch(obs), obs)
    np.testing.assert_array_equal(view.robot.ee_position, obs[:, 0:3])
    np.testing.assert_array_equal(view.goal_position, obs[:, 36:39])
    assert view.robot.gripper_openness.shape == (4,)
    with pytest.raises(AttributeError):
        view.goal_position = 1
    with pytest.raises(ValueError):
        view.robot.ee_position[0, 0] = 1.0
    assert view.row(2).robot.ee_position.shape == (3,)
