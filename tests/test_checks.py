"""Pre-training checks: trajectory preference ranking, component scales and hacking probes."""

from __future__ import annotations

import math

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


def test_trajectories_are_graded_from_the_expert(drawer) -> None:
    _, trajs = drawer
    labels = {t.label for t in trajs}
    assert {"expert", "expert-stop25", "expert-stop50", "expert-stop75", "expert+noise0.25", "expert+noise2",
            "random", "idle", "reach-and-halt"} <= labels
    assert any(t.success for t in trajs if t.label == "expert")
    assert not any(t.success for t in trajs if t.label in ("random", "idle", "expert-stop25"))
    returns = {t.label: t.env_return for t in trajs}
    assert returns["expert-stop25"] < returns["expert-stop50"] < returns["expert"]  # stages in order
    assert [t.probe for t in trajs if t.label == "reach-and-halt"] == [True, True]


def test_reference_reward_ranks_by_task_progress(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(reference_program(card), card, trajs)
    assert report.basis == "success" and report.pairs > 10
    assert report.rho > 0.95 and report.rho_graded > 0.95 and report.score == min(report.rho, report.rho_graded)
    assert not report.warnings and not report.dropped_probes
    assert report.returns["expert"] > report.returns["expert-stop50"] > report.returns["random"]
    assert report.returns["expert"] > report.returns["reach-and-halt"]


def test_reach_only_reward_scores_below_the_reference(drawer) -> None:
    card, trajs = drawer
    reach = trajectory_preference_check(load_program(REACH_ONLY), card, trajs)
    reference = trajectory_preference_check(reference_program(card), card, trajs)
    assert reach.score < reference.score - 0.2  # before: both 1.00 (pairwise accuracy saturated)


@pytest.mark.parametrize("task", ["button-press-v3", "door-unlock-v3"])
def test_the_hacking_probe_does_not_succeed_where_it_used_to(task: str) -> None:
    """Its stop rule (hand within 5 cm of the object) never fired there: it pressed the button and
    turned the lock like the expert. It now also stops at the first contact (the object moving)."""
    trajs = collect_trajectories(load_card(f"metaworld/{task}"))
    probes = [t for t in trajs if t.probe]
    assert probes and not any(t.success for t in probes)


def test_a_probe_that_succeeds_is_no_probe_and_is_left_out() -> None:
    card = load_card("metaworld/reach-v3")  # reaching is the task: reach-and-halt solves it
    report = trajectory_preference_check(reference_program(card), card, collect_trajectories(card))
    assert report.dropped_probes == ["reach-and-halt"] and "reach-and-halt" not in report.returns


def test_each_terms_share_of_the_experts_return_is_reported(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(reference_program(card), card, trajs)
    shares = {k: v["expert_share"] for k, v in report.scales.items()}
    assert len(shares) >= 2
    assert sum(shares.values()) == pytest.approx(1.0)


def test_reward_for_standing_still_and_lopsided_components_are_flagged(drawer) -> None:
    card, trajs = drawer
    report = trajectory_preference_check(load_program(STAY_PUT), card, trajs)
    text = " ".join(report.warnings)
    assert "standing still" in text and "'still' is" in text
    assert report.scales["still"]["share"] > 0.9


def test_tasks_without_experts_rank_by_env_return() -> None:
    card = load_card("mujoco/Reacher-v5")
    report = trajectory_preference_check(reference_program(card), card, collect_trajectories(card, horizon=50))
    assert report.basis == "env return" and report.accuracy == 1.0 and report.rho > 0.9
    assert math.isnan(report.rho_graded) and report.score == report.rho
    # found by a user: "graded nan" was printed, unexplained
    assert report.summary() == f"{report.score:.2f} (rho {report.rho:.2f}, no graded expert trajectories on this task)"
