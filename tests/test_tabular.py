"""The tabular trainer: vectorised learners, exact metric, seeds, settings, and the shapers' SB3 path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.cards import load_card
from rewardlab.errors import UserError
from rewardlab.shaping.teachers import Teacher, potential_shaping_term
from rewardlab.sims.gridworld import chain, room
from rewardlab.sources import parse_source
from rewardlab.training import train
from rewardlab.training.tabular import q_learning, reinforce


def _first_hits(values: np.ndarray, episodes: np.ndarray, target: float) -> np.ndarray:
    hit = values >= target
    return np.where(hit.any(1), episodes[hit.argmax(1)], -1)


def test_q_learning_with_pbrs_learns_room_in_a_few_episodes_and_orig_does_not() -> None:
    """The research note's re-run: PBRS reaches 0.9 V* after 3-7 episodes, ORIG after hundreds."""
    mdp = room()
    teacher = Teacher.solve(mdp)
    target = 0.9 * mdp.optimal_start_value()
    pbrs = q_learning(mdp, mdp.R + potential_shaping_term(mdp, teacher.V), runs=8, episodes=32,
                      rng=np.random.default_rng(0))
    orig = q_learning(mdp, mdp.R, runs=8, episodes=32, rng=np.random.default_rng(0))
    assert (0 <= _first_hits(pbrs.values, pbrs.episodes, target)).all()
    assert (_first_hits(pbrs.values, pbrs.episodes, target) <= 16).all()
    assert (_first_hits(orig.values, orig.episodes, target) == -1).all()
    assert orig.values.shape == (8, 33) and orig.episodes[0] == 0 and orig.episodes[-1] == 32


def test_reinforce_improves_the_softmax_policy_on_a_short_chain() -> None:
    mdp = chain(length=6, start_state=3, horizon=12, slip=0.0)
    curves = reinforce(mdp, mdp.R, runs=4, episodes=200, rng=np.random.default_rng(1), learning_rate=0.1,
                       eval_every=50, metric="horizon_return")
    assert list(curves.episodes) == [0, 50, 100, 150, 200]
    assert (curves.values[:, -1] > curves.values[:, 0] + 1.0).all()


def test_the_tabular_trainer_is_reproducible_per_seed(tmp_path: Path) -> None:
    source = parse_source({"name": "exprd", "shaper": {"name": "exprd", "budget": 1}})
    kwargs = {"trainer": "tabular", "preset_overrides": {"runs": 3, "learning_rate": 0.1}}
    a = train("gridworld/linek", source, "reinforce", 40, seed=0, run_dir=tmp_path / "a", **kwargs)
    b = train("gridworld/linek", source, "reinforce", 40, seed=0, run_dir=tmp_path / "b", **kwargs)
    c = train("gridworld/linek", source, "reinforce", 40, seed=1, run_dir=tmp_path / "c", **kwargs)
    va, vb, vc = (np.load(tmp_path / d / "curves.npz")["values"] for d in "abc")
    np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(va, vc)
    assert a.eval.env_return == b.eval.env_return and len(a.eval.env_return) == 3
    assert a.trainer == "tabular" and a.steps == 40 and a.curve[0].step == 0 and a.curve[-1].step == 40
    assert (tmp_path / "a" / "designed_reward.py").is_file()
    assert c.eval.episodes == 3


def test_a_reward_program_trains_with_the_tabular_learners(tmp_path: Path) -> None:
    program = tmp_path / "goal.py"
    program.write_text("import numpy as np\n\ndef compute_dense_reward(self, action):\n"
                       "    return np.where((self.agent.state == 19) & (action == 1), 10.0, 0.0)\n")
    result = train("gridworld/linek", str(program), "qlearning", 20, seed=0, run_dir=tmp_path / "run",
                   trainer="tabular")
    assert result.reward_sha256 is not None and (tmp_path / "run" / "reward.py").is_file()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"runz": 2}, "takes alpha, epsilon, eval_every, metric, q0, runs, target, not runz"),
    ({"runs": 0}, "runs must be a whole number >= 1"),
    ({"epsilon": 1.5}, "epsilon must be in"),
    ({"metric": "success"}, "metric must be one of discounted, horizon_discounted, horizon_return"),
])
def test_meaningless_tabular_settings_are_one_line(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        train("gridworld/room", "env", "qlearning", 10, seed=0, run_dir=tmp_path, trainer="tabular",
              preset_overrides=overrides)


def test_the_tabular_trainer_refuses_a_task_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="the tabular trainer needs a task with a tabular model; mujoco/Hopper-v5"):
        train("mujoco/Hopper-v5", "env", "qlearning", 10, seed=0, run_dir=tmp_path, trainer="tabular")


def test_a_table_shaper_replaces_the_reward_in_sb3_vec_envs() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rewardlab.shaping.base import TabularRewardVecEnv
    from rewardlab.sims import make_env

    card = load_card("gridworld/room")
    table = np.arange(200, dtype=float).reshape(50, 4)
    venv = TabularRewardVecEnv(DummyVecEnv([lambda: make_env(card, seed=0)] * 2), table, replace=True)
    obs = venv.reset()
    for step in range(60):  # past a time limit, so an auto-reset happens
        actions = np.array([step % 4, 3])
        new_obs, reward, dones, infos = venv.step(actions)
        np.testing.assert_allclose(reward, table[obs, actions])
        assert all("unshaped_reward" in info for info in infos)
        obs = new_obs


def test_ppo_trains_on_a_gridworld_with_the_exprd_reward(tmp_path: Path) -> None:
    source = parse_source({"name": "exprd", "shaper": {"name": "exprd", "budget": 1}})
    result = train("gridworld/linek", source, "ppo", 512, seed=0, run_dir=tmp_path, eval_episodes=2)
    assert result.trainer == "sb3" and result.steps >= 512 and result.eval.episodes == 2


def test_replay_q_learning_replays_stored_rewards_backwards() -> None:
    """One deterministic episode through a 3-state chain, replayed backwards once: the value reaches
    the start state in a single update (forward order would need two)."""
    from rewardlab.training.tabular import replay_q_learning

    mdp = chain(length=3, start_state=1, slip=0.0, gamma=0.5, horizon=2)
    curves = replay_q_learning(mdp, mdp.R, runs=1, episodes=1, rng=np.random.default_rng(0), epsilon=0.0,
                               alpha=1.0, update_every=1, metric="horizon_return")
    # with Q = 0 the tie-split policy picks left or right; either way an update happened on what it did
    assert curves.values.shape == (1, 2)
    right = replay_q_learning(mdp, np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), runs=64,
                              episodes=1, rng=np.random.default_rng(1), epsilon=0.0, alpha=1.0, update_every=1,
                              metric="horizon_return")
    # runs whose episode went right twice (1 -> 2 -> 2) learnt Q(2,right) = 1 and Q(1,right) = 0.5 in one
    # backward pass: their greedy policy now goes right and earns 1 in the 2-step horizon
    assert np.isclose(right.values[:, 1], 1.0).sum() > 0 and np.isclose(right.values[:, 0], 0.25).all()
