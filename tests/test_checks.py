"""Pre-training checks: trajectory preference ranking, component scales and hacking probes."""

from __future__ import annotations

import pytest

from rewardlab.cards import load_card
from rewardlab.checks import collect_trajectories, trajectory_preference_check
from rewardlab.program import load_program, reference_program

REACH_ONLY = """
import numpy as np
def compute_dense_reward(self, action):
    d = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)
    return -d, {"reach": -d}
"""

STAY_PUT = """
import numpy as np
def compute_dense_reward(self, action):
    still = np.exp(-10.0 * np.sum(action ** 2, axis=-1))
    tiny = 1e-4 * self.obj1.position[:, 1]
    return still + tiny, {"still": still, "progress": tiny}
"""


@pytest.fixture(scope="module")
def drawer():
    card = load_card("metaworld/drawer-open-v3")
    return card, collect_trajectories(card, horizon=120)


def test_trajectories_cover_success_and_failure(drawer) -> None:
    _, trajs = drawer
    labels = {t.label for t in trajs}
    assert {"expert", "random", "idle", "reach-and-halt"} <= labels
    assert any(t.success for t in trajs if t.label == "expert")
    assert not any(t.success for t in trajs if t.label in ("random", "idle"))


def test_reference_reward_ranks_successful_trajectories_first(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(reference_program(card), card, trajs)
    assert report.basis == "success" and report.pairs > 10
    assert report.accuracy == 1.0 and not report.warnings
    assert report.returns["expert"] > report.returns["reach-and-halt"] > report.returns["random"]


def test_reach_only_reward_is_flagged_by_the_halting_probe(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(load_program(REACH_ONLY), card, trajs)
    assert report.accuracy < 1.0
    assert any("hacking" in w for w in report.warnings)


def test_reward_for_standing_still_and_lopsided_components_are_flagged(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(load_program(STAY_PUT), card, trajs)
    text = " ".join(report.warnings)
    assert "standing still" in text and "'still' is" in text
    assert report.scales["still"]["share"] > 0.9


def test_tasks_without_experts_rank_by_env_return() -> None:
    card = load_card("mujoco/Reacher-v5")
    report = trajectory_preference_check(reference_program(card), card, collect_trajectories(card, horizon=50))
    assert report.basis == "env return" and report.accuracy == 1.0
