"""EXPRD on a continuous task through an abstraction over card fields (issue 8, part 7): φ and the action
classes on hand-computed states, the seeded estimate of the abstract MDP from the real MetaWorld simulator,
the designed program in the sandbox and in the SB3 training env, and one-line refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rewardlab.cards import load_card
from rewardlab.checks import check_program
from rewardlab.errors import UserError
from rewardlab.program import RewardProgram
from rewardlab.shaping.abstraction import CardAbstraction, estimate_card_mdp
from rewardlab.shaping.base import check_shaper_for, make_shaper
from rewardlab.shaping.exprd import CardExplicableRewardDesign
from rewardlab.sims.base import get_simulator
from rewardlab.state import StateExtractor

REACH = load_card("metaworld/reach-v3")
#: Small sampling: the tests check the machinery, not the design's quality.
ABSTRACTION: dict[str, Any] = {"target": "goal_position", "source": "robot.ee_position", "offset": [0.0, 0.0, -0.045],
                               "edges": [0.05, 0.1, 0.2], "episodes": 3, "steps": 40, "hold": 5}


def _view(ee: np.ndarray, goal: np.ndarray) -> Any:
    """The reach card's state view of hand positions ``(B, 3)`` and goals ``(B, 3)`` (39-d observations)."""
    obs = np.zeros((len(ee), 39))
    obs[:, 0:3], obs[:, 36:39] = ee, goal
    extractor = StateExtractor(REACH, {"goal_position", "robot.ee_position"})
    return extractor.view(extractor.batch(obs), obs)


@pytest.fixture(scope="module")
def designed() -> CardExplicableRewardDesign:
    shaper = make_shaper("exprd", {"budget": 2, "abstraction": ABSTRACTION}, REACH, 0.99,
                         get_simulator("metaworld").capabilities(REACH))
    assert isinstance(shaper, CardExplicableRewardDesign)
    shaper.design_program()
    return shaper


def test_abstraction_maps_states_and_actions_to_the_hand_computed_cells() -> None:
    abstraction = CardAbstraction.parse(ABSTRACTION, REACH)
    goal = np.array([[0.0, 0.8, 0.2]] * 5)
    # fingertip = hand - 4.5 cm in z; distances to the goal 0.00, 0.07, 0.15, 0.30 and 0.12 m
    tip = goal + np.array([[0, 0, 0], [0.07, 0, 0], [0, -0.15, 0], [0, 0, 0.30], [0, 0.12, 0]])
    view = _view(tip + np.array([0, 0, 0.045]), goal)
    np.testing.assert_array_equal(abstraction.cells(view), [0, 1, 2, 3, 2])
    # offset (goal - tip) of state 1 is -x: moving -x is toward, +x away, +z other (cos 0), a zero move other
    actions = np.array([[-1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [-0.5, 0.5, 0, 0]])
    rows = _view(np.repeat(tip[1:2] + [0, 0, 0.045], 5, 0), np.repeat(goal[1:2], 5, 0))
    # the last action is 45° off the offset: cos 0.707 >= 0.5, toward
    np.testing.assert_array_equal(abstraction.action_classes(rows, actions), [0, 2, 1, 1, 0])


def test_abstract_mdp_estimate_is_seeded() -> None:
    abstraction = CardAbstraction.parse(ABSTRACTION, REACH)
    first = estimate_card_mdp(REACH, abstraction, 0.99)
    again = estimate_card_mdp(REACH, abstraction, 0.99)
    np.testing.assert_array_equal(first.mdp.T, again.mdp.T)
    np.testing.assert_array_equal(first.counts, again.counts)
    assert first.counts.sum() == 3 * 40
    other = estimate_card_mdp(REACH, CardAbstraction.parse({**ABSTRACTION, "seed": 1}, REACH), 0.99)
    assert not np.array_equal(first.counts, other.counts)
    np.testing.assert_allclose(first.mdp.T.sum(-1), 1.0)
    assert first.mdp.R[0].tolist() == [1.0, 1.0, 1.0] and not first.mdp.R[1:].any()


def test_designed_program_passes_the_sandbox_and_is_constant_within_a_cell(designed: CardExplicableRewardDesign,
                                                                           tmp_path: Path) -> None:
    assert designed.source is not None and designed.designed is not None and designed.log is not None
    program = RewardProgram(designed.source, origin="test")
    assert check_program(program, REACH, seed=3).ok
    reward = program.bind(REACH)
    abstraction = designed.abstraction
    rng = np.random.default_rng(0)
    bounds = (0.0, *abstraction.edges, 0.5)
    for z in range(abstraction.n_states):
        # 64 random states in cell z: random goals, tips at a random distance inside the cell, random direction
        goal = rng.uniform([-0.1, 0.7, 0.05], [0.1, 0.9, 0.3], size=(64, 3))
        direction = rng.normal(size=(64, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        dist = rng.uniform(bounds[z] + 1e-4, bounds[z + 1] - 1e-4, size=(64, 1))
        tip = goal - dist * direction  # offset goal - tip = dist * direction
        view = _view(tip + np.array([0, 0, 0.045]), goal)
        for kind, sign in ((0, 1.0), (2, -1.0)):
            actions = np.concatenate([sign * direction * rng.uniform(0.2, 1.0, (64, 1)), rng.uniform(-1, 1, (64, 1))], 1)
            values, _ = reward(view, actions)
            expected = designed.designed[z, kind] if z in designed.log.chosen else 0.0
            np.testing.assert_allclose(values, expected)
    paths = designed.write_artifacts(tmp_path)
    assert [p.name for p in paths] == ["designed_reward.py", "designed_reward.md"]
    assert "π_T (value iteration on the estimated MDP)" in (tmp_path / "designed_reward.md").read_text()


def test_designed_program_replaces_the_reward_in_the_training_env(designed: CardExplicableRewardDesign) -> None:
    from rewardlab.training.sb3 import make_vec_env

    extractor = StateExtractor(REACH, designed.fields_used() | REACH.success_rule.fields if REACH.success_rule
                               else designed.fields_used())
    venv = designed.wrap(make_vec_env(REACH, extractor, None, 2, seed=0, monitor=False), extractor)
    program = RewardProgram(designed.source or "", origin="test").bind(REACH)
    venv.reset()
    rng = np.random.default_rng(0)
    try:
        for _ in range(5):
            actions = rng.uniform(-1, 1, size=(2, 4))
            obs, rewards, dones, infos = venv.step(actions)
            expected, _ = program(_view(obs[:, 0:3], obs[:, 36:39]), actions)
            np.testing.assert_allclose(rewards, expected, rtol=1e-6)
            assert all("unshaped_reward" in info for info in infos)
    finally:
        venv.close()


@pytest.mark.parametrize(("abstraction", "message"), [
    ({**ABSTRACTION, "target": "goal_pos"}, "abstraction field 'goal_pos' is not in metaworld/reach-v3"),
    ({**ABSTRACTION, "source": "obj1.quaternion"}, "have different shapes"),
    ({**ABSTRACTION, "edges": []}, "abstraction edges"),
    ({**ABSTRACTION, "edges": [0.1, 0.05]}, "edges must be increasing distances > 0"),
    ({**ABSTRACTION, "offset": [0.0, 0.1]}, "offset has 2 entries"),
    ({**ABSTRACTION, "bins": 4}, "abstraction bins"),
    ({k: v for k, v in ABSTRACTION.items() if k != "edges"}, "abstraction edges: Field required"),
    ("goal", "abstraction must be true"),
])
def test_card_abstraction_refuses_a_mis_specified_abstraction_with_one_line(abstraction: Any, message: str) -> None:
    with pytest.raises(UserError, match="^shaper 'exprd'") as e:
        check_shaper_for(REACH, "exprd", {"budget": 3, "abstraction": abstraction})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_exprd_with_the_tasks_own_abstraction_points_a_continuous_task_to_card_fields() -> None:
    with pytest.raises(UserError, match=r"needs an abstraction; metaworld/reach-v3 provides an expert policy \(declare one "
                                        r"over its card fields: abstraction: \{target"):
        check_shaper_for(REACH, "exprd", {"budget": 3, "abstraction": True})


def test_card_abstraction_refuses_a_task_without_an_expert_or_with_one_field_twice() -> None:
    with pytest.raises(UserError, match="^shaper 'exprd' needs an expert policy; mujoco/Reacher-v5 does not provide it"):
        check_shaper_for(load_card("mujoco/Reacher-v5"), "exprd", {"budget": 3, "abstraction": ABSTRACTION})
    with pytest.raises(UserError, match="^shaper 'exprd': abstraction: target and source are the same field"):
        check_shaper_for(load_card("gridworld/room"), "exprd",
                         {"budget": 3, "abstraction": {"target": "agent.cell", "source": "agent.cell", "edges": [1.0]}})


def test_sac_trains_on_the_designed_reward_through_a_spec_and_the_run_stores_it(tmp_path: Path) -> None:
    import yaml

    from rewardlab.runs.runner import run_experiment
    from rewardlab.store import DB_NAME, RunStore

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "designed-reach", "tasks": ["metaworld/reach-v3"],
        "rewards": [{"name": "exprd-b2", "shaper": {"name": "exprd", "budget": 2, "abstraction": ABSTRACTION}}],
        "algorithms": ["sac"], "seeds": [0], "budget": {"steps": 300}, "evaluation": {"episodes": 1},
        "hyperparameters": {"batch_size": 32, "policy_kwargs": {"net_arch": [16]}}, "workers": 1}))
    summary = run_experiment(spec, out=tmp_path / "runs", workers=1)
    assert summary.counts.get("done") == 1
    with RunStore(tmp_path / "runs" / DB_NAME) as store:
        stored = [r[0] for r in store._db.execute("SELECT source FROM reward_programs WHERE origin = 'shaper:exprd'")]  # noqa: SLF001
    trial = next((tmp_path / "runs").glob("designed-reach-*/trials/*"))
    assert stored == [(trial / "designed_reward.py").read_text()]
    assert "EXPRD" in stored[0] and (trial / "model.zip").is_file()


def test_expadard_redesigns_from_the_learners_action_classes_while_it_trains() -> None:
    from rewardlab.shaping.expadard import AdaptiveAbstractRewardVecEnv, CardAdaptiveRewardDesign
    from rewardlab.training.sb3 import make_vec_env

    shaper = make_shaper("expadard", {"update_every": 1, "abstraction": ABSTRACTION}, REACH, 0.99,
                         get_simulator("metaworld").capabilities(REACH))
    assert isinstance(shaper, CardAdaptiveRewardDesign)
    extractor = StateExtractor(REACH, shaper.fields_used())
    venv = shaper.wrap(make_vec_env(REACH, extractor, None, 1, seed=0, monitor=False), extractor)
    assert isinstance(venv, AdaptiveAbstractRewardVecEnv)
    abstraction = shaper.abstraction
    rng = np.random.default_rng(0)
    venv.reset()
    try:
        for _ in range(REACH.episode_steps):
            design = venv.R
            actions = rng.uniform(-1, 1, size=(1, 4))
            obs, rewards, dones, _ = venv.step(actions)
            view = _view(obs[:, 0:3], obs[:, 36:39]) if not dones[0] else None
            if view is not None:
                expected = design[abstraction.cells(view), abstraction.action_classes(view, actions)]
                np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    finally:
        venv.close()
    assert dones[0] and [e for e, _ in venv.history] == [0, 1]
    assert all(venv.lp.teacher.satisfies_invariance(R) for _, R in venv.history)


def test_expadard_with_an_abstraction_refuses_unknown_settings() -> None:
    with pytest.raises(UserError, match="^shaper 'expadard' takes r_max, teacher_epsilon, update_every, not budget$"):
        check_shaper_for(REACH, "expadard", {"budget": 3, "abstraction": ABSTRACTION})
    with pytest.raises(UserError, match="^shaper 'expadard': abstraction must be a mapping"):
        check_shaper_for(REACH, "expadard", {"abstraction": True})
