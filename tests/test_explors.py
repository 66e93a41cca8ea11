"""ExploRS on tabular tasks: counts, bonus and the meta-gradient update checked by hand on a 3-state
chain, and the shaper wired into the tabular trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.errors import UserError
from rewardlab.shaping.explors import ExplorationGuidedOnline
from rewardlab.sims.gridworld import chain
from rewardlab.sources import parse_source
from rewardlab.training import train
from rewardlab.training.tabular import EpisodeBatch

RIGHT, LEFT = 1, 0


def test_explors_counts_bonus_and_updates_match_a_hand_computation() -> None:
    mdp = chain(length=3, start_state=1, slip=0.0, gamma=0.5, horizon=3)  # states 0, 1, 2 and terminal 3
    online = ExplorationGuidedOnline(mdp, runs=1, explore=True, exploit=True, update_every=1)
    one = np.array([True])
    steps = [(1, RIGHT, 2), (2, RIGHT, 2), (2, RIGHT, 2)]
    rewards = [online.step_reward(np.array([s]), np.array([a]), np.array([n]), one)[0] for s, a, n in steps]
    # bonus of s' before the acting state is counted: N(2) = 0, 0, then 1
    assert rewards == pytest.approx([1.0, 1.0, 1 / np.sqrt(2)])
    np.testing.assert_array_equal(online.counts[0], [0, 1, 2, 0])
    assert online.exploration_bonus(np.array([3]))[0] == 0.0  # nothing for the absorbing state
    batch = EpisodeBatch(states=np.array([[1], [2], [2]]), actions=np.array([[RIGHT]] * 3),
                         next_states=np.array([[2], [2], [2]]), rewards=np.array([[0.0], [1.0], [1.0]]),
                         alive=np.ones((3, 1), dtype=bool))
    online.end_episode(batch, np.full((1, 4, 2), 0.5))
    # Ḡ = 0.75, 1.5, 1 (γ = 0.5); w = π(a|s)(Ḡ − V) = 0.375, 0.75, 0.5
    np.testing.assert_allclose(online.phi[0, 1], 0.01 * np.array([-0.1875, 0.1875]))
    np.testing.assert_allclose(online.phi[0, 2], 0.01 * np.array([-0.625, 0.625]))
    np.testing.assert_allclose(online.V[0, :3], [0.0, 0.01 * 0.75 / 3, 0.01 * 2.5 / 3])
    # the learned exploitation reward is now part of the step reward
    r = online.step_reward(np.array([2]), np.array([RIGHT]), np.array([2]), one)[0]
    assert r == pytest.approx(1 / np.sqrt(3) + 0.00625)
    # a finished run (alive False) gets nothing and counts nothing
    assert online.step_reward(np.array([2]), np.array([RIGHT]), np.array([2]), np.array([False]))[0] == 0.0
    assert online.counts[0, 2] == 3


def test_explob_and_selfrs_are_the_two_halves() -> None:
    mdp = chain(length=3, start_state=1, slip=0.0, gamma=0.5, horizon=3)
    bonus_only = ExplorationGuidedOnline(mdp, runs=1, explore=True, exploit=False)
    learned_only = ExplorationGuidedOnline(mdp, runs=1, explore=False, exploit=True)
    args = (np.array([1]), np.array([RIGHT]), np.array([2]), np.array([True]))
    assert bonus_only.step_reward(*args)[0] == 1.0
    assert learned_only.step_reward(*args)[0] == 0.0 and learned_only.counts.sum() == 0


@pytest.mark.parametrize("name", ["explors", "explob", "selfrs"])
def test_the_tabular_trainer_runs_exploration_shapers(tmp_path: Path, name: str) -> None:
    source = parse_source({"name": name, "shaper": {"name": name}})
    result = train("gridworld/chain-distractor", source, "reinforce", 30, seed=0, run_dir=tmp_path, trainer="tabular",
                   preset_overrides={"runs": 2, "learning_rate": 0.1, "eval_every": 10,
                                     "metric": "horizon_discounted", "target": 10.0})
    data = np.load(tmp_path / "curves.npz")
    assert list(data["episodes"]) == [0, 10, 20, 30] and float(data["target"]) == 10.0
    assert result.eval.episodes == 2


def test_exploration_shapers_refuse_bad_settings(tmp_path: Path) -> None:
    source = parse_source({"name": "x", "shaper": {"name": "explors", "update_every": 0}})
    with pytest.raises(UserError, match="update_every must be a whole number >= 1"):
        train("gridworld/chain", source, "reinforce", 10, seed=0, run_dir=tmp_path, trainer="tabular")


def test_sors_raises_the_reward_of_the_better_episode_by_a_bradley_terry_step() -> None:
    from rewardlab.shaping.sors import SelfSupervisedOnline

    mdp = chain(length=3, start_state=1, slip=0.0, gamma=0.5, horizon=2)
    sors = SelfSupervisedOnline(mdp, runs=1, rng=np.random.default_rng(0), update_every=2)
    good = EpisodeBatch(np.array([[1], [2]]), np.array([[RIGHT], [RIGHT]]), np.array([[2], [2]]),
                        np.array([[0.0], [1.0]]), np.ones((2, 1), dtype=bool))
    bad = EpisodeBatch(np.array([[1], [0]]), np.array([[LEFT], [LEFT]]), np.array([[0], [3]]),
                       np.array([[0.0], [0.0]]), np.ones((2, 1), dtype=bool))
    sors.end_episode(good, np.full((1, 4, 2), 0.5))
    assert not sors.phi.any()  # N_r = 2: no update after one episode
    sors.end_episode(bad, np.full((1, 4, 2), 0.5))
    # one pair (good > bad), σ(0) = 0.5: φ += 0.01 * 0.5 * (visits_good - visits_bad), visits discounted by γ^t
    expected = np.zeros((4, 2))
    expected[1, RIGHT], expected[2, RIGHT] = 0.005, 0.0025
    expected[1, LEFT], expected[0, LEFT] = -0.005, -0.0025
    np.testing.assert_allclose(sors.phi[0], expected)


def test_online_shapers_refuse_sb3_rather_than_train_unshaped(tmp_path: Path) -> None:
    source = parse_source({"name": "explors", "shaper": {"name": "explors"}})
    with pytest.raises(UserError, match="runs with the tabular trainer only"):
        train("gridworld/chain", source, "ppo", 512, seed=0, run_dir=tmp_path)
