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


# -- load-time checks against the live env (rewardlab.sims.verify_card) --------------------------------
def _edited(tmp_path: Path, source: Path, *edits: tuple[str, str], name: str = "edited.yaml") -> Path:
    text = source.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("env_id: InvertedPendulum-v5", "env_id: InvertedPendulm-v5"),
         "is not a mujoco env; did you mean 'InvertedPendulum-v5'"),
        (('source: "data.qvel[0]"', 'source: "data.qvel[99]"'), "cart.velocity: source 'data.qvel[99]' failed: IndexError"),
        (("action: {shape: [1], low: -3, high: 3", "action: {shape: [2], low: -3, high: 3"),
         "action shape [1] in the env, [2] in the card"),
        (('source: "obs[1]"', 'source: "obs[7]"'), "pole.angle: obs[7] is outside the 4-d observation"),
    ],
)
def test_verify_card_names_every_live_mismatch_and_the_file(tmp_path: Path, toy_card_path: Path,
                                                            edit: tuple[str, str], message: str) -> None:
    from rewardlab.sims import verify_card

    path = _edited(tmp_path, toy_card_path, edit)
    card = load_card(path)
    with pytest.raises(UserError) as info:
        verify_card(card, use_cache=False)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_passing_check_is_cached_and_a_changed_card_is_checked_again(tmp_path: Path, toy_card_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import rewardlab.sims.base as base
    from rewardlab.sims import verify_card

    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path / "cache"))
    made: list[str] = []
    real = base.make_env
    monkeypatch.setattr(base, "make_env", lambda card, **kw: made.append(card.id) or real(card, **kw))
    card = load_card(toy_card_path)
    verify_card(card)
    verify_card(card)
    assert made == ["test/toy-pendulum"]  # the second use is served from the cache
    changed = load_card(_edited(tmp_path, toy_card_path, ("Keep the pole upright.", "Balance it.")))
    verify_card(changed)
    assert len(made) == 2


@pytest.mark.slow
def test_metaworld_episode_length_of_the_card_is_honoured(tmp_path: Path) -> None:
    """MetaWorld cuts episodes at its own max_path_length (500) whatever the TimeLimit says; a card
    asking for 600 steps gets 600."""
    path = _edited(tmp_path, card_index()["metaworld/reach-v3"], ("episode_steps: 500", "episode_steps: 600"))
    card = load_card(path)
    env = make_env(card, seed=0)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        done = terminated or truncated
    env.close()
    assert steps == 600


def test_python_slice_sources_have_pythons_meaning(tmp_path: Path) -> None:
    from rewardlab.state import StateExtractor

    path = _edited(tmp_path, card_index()["metaworld/reach-v3"],
                   ('goal_position: {source: "obs[36:39]"', 'goal_position: {source: "obs[-3:]"'))
    card = load_card(path)
    assert card.fields()["goal_position"].obs_columns(39) == [36, 37, 38]
    from rewardlab.cards import parse_obs_source

    assert parse_obs_source("obs[36:]").columns(39) == [36, 37, 38]
    assert parse_obs_source("obs[::2]").columns(5) == [0, 2, 4]
    assert parse_obs_source("obs[-1]").columns(4) == [3]
    assert parse_obs_source("obs").columns(3) == [0, 1, 2]
    assert parse_obs_source("data.qpos[0]") is None
    obs = np.arange(2 * 39, dtype=float).reshape(2, 39)
    view = StateExtractor(card).view(StateExtractor(card).batch(obs))
    assert view.goal_position.tolist() == obs[:, 36:39].tolist()


def test_a_threshold_success_needs_a_scalar_field(tmp_path: Path, toy_card_path: Path) -> None:
    path = _edited(tmp_path, toy_card_path, ("success: survived", "success: qpos < 1"))
    with pytest.raises(UserError, match="needs a scalar field; qpos has shape"):
        load_card(path)


def test_the_success_rule_is_one_object() -> None:
    from rewardlab.cards import SuccessRule

    rule = SuccessRule.parse("target.distance < 0.02", {"target.distance"})
    assert rule.fields == {"target.distance"}
    assert rule.holds(final=0.01) and not rule.holds(final=np.array([0.03]))
    assert SuccessRule.parse("survived").holds(terminated=False) and not SuccessRule.parse("survived").holds(terminated=True)
    assert SuccessRule.parse("info.success").holds(info_hit=True)
    assert "self.target.distance < 0.02" in rule.describe() and str(rule) == "target.distance < 0.02"
    assert load_card("mujoco/Reacher-v5").success_rule == rule


# -- an open simulator registry and discrete spaces --------------------------------------------------
GRID_CARD = """\
id: test/frozen-lake
simulator: test-toytext
env_id: FrozenLake-v1
make_kwargs: {is_slippery: false}
instruction: Walk from the start to the goal without falling into a hole.
episode_steps: 50
success: "position > 14.5"
observation: {type: discrete, n: 16, doc: "the cell, row-major on the 4x4 map"}
entities:
  position: {source: "obs", shape: [], doc: "the cell index 0..15 (row-major); 15 is the goal"}
action: {type: discrete, n: 4, doc: "0 left, 1 down, 2 right, 3 up"}
"""


@pytest.fixture
def toytext_simulator() -> None:
    import gymnasium as gym

    from rewardlab.sims.base import Simulator
    from rewardlab.sims.registry import SIMULATORS, register_simulator

    class ToyText(Simulator):
        name = "test-toytext"

        def presets(self):  # type: ignore[no-untyped-def]
            return {"ppo": {"default": {"policy": "MlpPolicy", "n_envs": 2, "n_steps": 128, "batch_size": 64}}}

        def make_env(self, card, seed=None, render_mode=None):  # type: ignore[no-untyped-def]
            env = gym.make(card.env_id, max_episode_steps=card.episode_steps, **card.make_kwargs)
            if seed is not None:
                env.reset(seed=seed)
                env.action_space.seed(seed)
            return env

    register_simulator("test-toytext", ToyText())
    yield
    SIMULATORS.unregister("test-toytext")


def test_a_registered_simulator_with_discrete_spaces_checks_rewards_and_trains(
        tmp_path: Path, toytext_simulator: None) -> None:
    from rewardlab.checks import check_program
    from rewardlab.sims import verify_card
    from rewardlab.training import train

    path = tmp_path / "frozen-lake.yaml"
    path.write_text(GRID_CARD)
    card = load_card(path)
    verify_card(card, use_cache=False)
    assert "integers in [0, 3]" in render_stubs(card)
    program = ("import numpy as np\n\ndef compute_dense_reward(self, action):\n"
               "    row, col = self.position // 4, self.position % 4\n"
               "    progress = (row + col) / 6.0\n"
               "    return progress, {'progress': progress}\n")
    report = check_program(program, card, n_states=32)
    assert report.ok and report.mode == "batched", report.message
    result = train(card, program, "ppo", 512, seed=0, run_dir=tmp_path / "run", eval_episodes=2)
    assert result.eval.episodes == 2 and result.eval.success[0] in (True, False)
    assert result.curve[0].components.keys() == {"progress"}


def test_an_unregistered_simulator_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(GRID_CARD)
    with pytest.raises(UserError, match=r"unknown simulator 'test-toytext'; .*known: .*metaworld, mujoco"):
        load_card(path)
