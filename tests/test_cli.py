"""The command line: every user error is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def rewardlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "rewardlab", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_envs_list_and_show() -> None:
    listing = rewardlab("envs", "list")
    assert listing.returncode == 0
    assert "metaworld/drawer-open-v3" in listing.stdout and "mujoco/HalfCheetah-v5" in listing.stdout
    show = rewardlab("envs", "show", "metaworld/drawer-open-v3")
    assert show.returncode == 0
    assert "class Robot:" in show.stdout and "ee_position" in show.stdout and "drawer-open-v3.py" in show.stdout


def test_check_prints_verdict_and_component_statistics(tmp_path: Path) -> None:
    ref = Path(__file__).resolve().parents[1] / "envs" / "metaworld" / "drawer-open-v3.py"
    ok = rewardlab("check", str(ref), "--env", "metaworld/drawer-open-v3", "--states", "64")
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "total" in ok.stdout and "batched" in ok.stdout


def test_check_rejection_names_rule_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\n\ndef compute_dense_reward(self, action):\n    return ().__class__\n")
    proc = rewardlab("check", str(bad), "--env", "mujoco/Hopper-v5")
    assert proc.returncode == 1
    assert_one_line_error(proc, "REJECTED", "[dunder]", "line 4")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("envs", "show", "mujoco/Hoper-v5"), ("unknown env id", "mujoco/Hopper-v5")),
        (("check", "missing.py", "--env", "mujoco/Hopper-v5"), ("not found", "missing.py")),
        (("train", "--env", "mujoco/Nope-v5", "--steps", "10"), ("unknown env id",)),
        (("train", "--env", "mujoco/Hopper-v5", "--reward", "nofile.py", "--steps", "10"), ("not found", "nofile.py")),
        (("train", "--env", "mujoco/Hopper-v5", "--algo", "dqn", "--steps", "10"), ("unknown algorithm", "dqn")),
        (("run", "missing-spec.yaml"), ("missing-spec.yaml",)),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_one_line_error(rewardlab(*args, cwd=tmp_path), *needles)


def test_invalid_spec_field_is_one_clear_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntasks: [mujoco/Hopper-v5]\nrewards: [env]\nalgorithms: [ppo]\nseeds: [0]\n"
                    "budget: {steps: 100}\nevaluation: {episodes: 1}\nwrokers: 2\n")
    assert_one_line_error(rewardlab("run", str(spec), "--out", str(tmp_path / "runs")), "wrokers")


def test_rejected_program_in_train_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "evil.py"
    bad.write_text("import os\ndef compute_dense_reward(self, action):\n    return 0.0\n")
    proc = rewardlab("train", "--env", "mujoco/InvertedPendulum-v5", "--reward", str(bad), "--steps", "64",
                     "--out", str(tmp_path / "runs"))
    assert_one_line_error(proc, "[import]", "line 1", "'os'")


def test_train_command_runs_and_reports(tmp_path: Path) -> None:
    proc = rewardlab("train", "--env", "mujoco/InvertedPendulum-v5", "--reward", "reference", "--steps", "1024",
                     "--eval-episodes", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "env return" in proc.stdout
    assert list(tmp_path.rglob("model.zip"))
