"""``rewardlab train --shaper``: a shaper on the command line trains, and one the task cannot provide
for is one line (the reward-design issue's example)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cli import assert_one_line_error, rewardlab


def test_train_with_exprd_on_a_gridworld_writes_the_designed_reward(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "gridworld/linek", "--shaper", "exprd", "--budget", "1", "--trainer", "tabular",
                     "--algo", "qlearning", "--steps", "50", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.rglob("designed_reward.py"))) == 1 and list(tmp_path.rglob("curves.npz"))
    # the summary names what the tabular trainer counted and wrote: 1 run of 50 episodes, no model or TensorBoard
    out = " ".join(proc.stdout.split())
    assert "runs episodes each final value (mean over runs) target optimum 1 50 " in out
    assert "TensorBoard" not in out and "model" not in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    written = ", ".join(sorted(p.name for p in run_dir.iterdir()))
    assert "curves.npz" in written and "designed_reward.py" in written and f"{written} in" in out


def test_train_help_says_the_tabular_trainer_counts_episodes() -> None:
    proc = rewardlab("train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "episodes per run for --trainer tabular" in " ".join(proc.stdout.replace("│", " ").split())


def test_a_shaper_the_task_cannot_provide_for_is_one_line(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "mujoco/Hopper-v5", "--shaper", "exprd", "--budget", "5", "--out", str(tmp_path))
    assert_one_line_error(proc, "shaper 'exprd' needs a tabular model; mujoco/Hopper-v5 does not provide it")
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


def test_train_neural_explors_on_the_cli_saves_its_nets(tmp_path: Path) -> None:
    from rewardlab.shaping.explors import WEIGHTS_NAME, load_neural_explors

    proc = rewardlab("train", "--env", "gridworld/chain", "--shaper", "explors", "--neural", "--algo", "ppo",
                     "--steps", "512", "--eval-episodes", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (weights,) = tmp_path.rglob(WEIGHTS_NAME)
    reward, critic, meta = load_neural_explors(weights)
    assert meta["shaper"] == "explors" and meta["n_actions"] == 2 and meta["features"] == 62  # chain: 61 + terminal
    x = torch.eye(62)
    assert reward.all_actions(x).shape == (62, 2) and critic(x).shape == (62, 1)


@pytest.mark.parametrize(("args", "message"), [
    (("--neural",), "--neural is a shaper's setting (explors, explob, selfrs); give --shaper too"),
    (("--shaper", "exprd", "--budget", "3", "--neural"), "--neural applies to explors, explob, selfrs; shaper 'exprd'"),
    (("--shaper", "selfrs", "--neural", "--trainer", "tabular", "--algo", "reinforce"),
     "--neural selfrs trains an SB3 learner"),
    (("--shaper", "explors", "--neural", "--algo", "dqn", "--steps", "1000"), "needs an on-policy learner"),
])
def test_neural_on_the_cli_where_it_makes_no_sense_is_one_line(tmp_path: Path, args: tuple[str, ...],
                                                               message: str) -> None:
    proc = rewardlab("train", "--env", "gridworld/chain", *args, "--out", str(tmp_path))
    assert_one_line_error(proc, message)
    assert not list(tmp_path.rglob("*.pt"))  # nothing half-written is left
