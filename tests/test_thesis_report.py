"""The thesis section of a run report: pooled runs, first episode at the target, log2 plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.runs.thesis import first_reaching, mean_ci, thesis_section
from rewardlab.store import TrialRecord


def _trial(run_dir: Path, name: str, reward: str, seed: int, values: np.ndarray, optimum: float = 6.0) -> TrialRecord:
    trial_dir = run_dir / "trials" / name
    trial_dir.mkdir(parents=True)
    np.savez(trial_dir / "curves.npz", episodes=np.arange(values.shape[1]), values=values, optimum=optimum,
             target=0.9 * optimum)
    return TrialRecord(id=seed, run_id="r", key=f"t|{reward}|qlearning|{seed}", task="gridworld/room", reward=reward,
                       algo="qlearning", seed=seed, status="done", started=None, finished=None, result=None,
                       error=None, dir=str(trial_dir), program_id=None, trainer="tabular")


def test_first_reaching_and_the_interval_by_hand() -> None:
    episodes = np.array([0, 1, 2, 3])
    values = np.array([[0, 5, 6, 6], [0, 0, 0, 0]], dtype=float)
    assert first_reaching(episodes, values, 5.4).tolist() == [2, -1]
    mean, half = mean_ci(np.array([[1.0], [3.0]]))
    assert mean[0] == 2.0 and half[0] == pytest.approx(12.7062047)  # t(0.975, 1) * sd 1.414 / sqrt(2)


def test_the_section_pools_seeds_and_names_runs_that_never_reach(tmp_path: Path) -> None:
    fast = np.tile(np.array([0, 3, 6, 6, 6, 6, 6, 6, 6], dtype=float), (2, 1))
    slow = np.zeros((2, 9))
    slow[0, 8] = 6.0
    trials = [_trial(tmp_path, "a", "pbrs", 0, fast), _trial(tmp_path, "b", "pbrs", 1, fast),
              _trial(tmp_path, "c", "orig", 0, slow)]
    lines = thesis_section("gridworld/room", trials, tmp_path)
    text = "\n".join(lines)
    assert "| pbrs | qlearning | 4 | 2–2 | 2 | 0/4 |" in text
    assert "| orig | qlearning | 2 | 8–8 | — | 1/2 |" in text
    assert (tmp_path / "thesis_gridworld_room.png").is_file()
