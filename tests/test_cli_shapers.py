"""``rewardlab train --shaper``: a shaper on the command line trains, and one the task cannot provide
for is one line (the reward-design issue's example)."""

from __future__ import annotations

from pathlib import Path

from test_cli import assert_one_line_error, rewardlab


def test_train_with_exprd_on_a_gridworld_writes_the_designed_reward(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "gridworld/linek", "--shaper", "exprd", "--budget", "1", "--trainer", "tabular",
                     "--algo", "qlearning", "--steps", "50", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "env return" in proc.stdout
    assert len(list(tmp_path.rglob("designed_reward.py"))) == 1 and list(tmp_path.rglob("curves.npz"))


def test_a_shaper_the_task_cannot_provide_for_is_one_line(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "mujoco/Hopper-v5", "--shaper", "exprd", "--budget", "5", "--out", str(tmp_path))
    assert_one_line_error(proc, "shaper 'exprd' needs a tabular model; mujoco/Hopper-v5 provides")
    assert not list(tmp_path.rglob("*"))  # nothing was made


def test_shaper_settings_without_a_shaper_are_refused(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "gridworld/room", "--budget", "5", "--out", str(tmp_path))
    assert_one_line_error(proc, "--budget and --potential are a shaper's settings; give --shaper too")


def test_a_run_stores_the_designed_reward_as_a_program(tmp_path: Path) -> None:
    from rewardlab.runs.runner import run_experiment
    from rewardlab.store import DB_NAME, RunStore

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: designed\ntasks: [gridworld/linek]\nrewards:\n  - {name: exprd-b1, shaper: {name: exprd, budget: 1}}\n"
                    "trainer: tabular\nalgorithms: [qlearning]\nseeds: [0]\nbudget: {steps: 5}\nworkers: 1\n")
    summary = run_experiment(spec, out=tmp_path / "runs", workers=1)
    assert summary.counts.get("done") == 1
    with RunStore(tmp_path / "runs" / DB_NAME) as store:
        origins = [r[0] for r in store._db.execute("SELECT origin FROM reward_programs")]  # noqa: SLF001
    assert origins == ["shaper:exprd"]
