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
        (("train", "--env", "mujoco/Hopper-v5", "--algo", "a2c", "--steps", "10"), ("unknown algorithm", "a2c")),
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


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--steps", "0"), ("--steps", "greater than 0")),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--steps", "-5"), ("--steps", "greater than 0")),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--steps", "1"), ("less than one PPO rollout", "at least 1024")),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--algo", "sac", "--steps", "50"), ("SAC's warm-up",)),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--seed", "-1"), ("--seed", "greater than or equal to 0")),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--seed", "4294967296"), ("--seed", "4294967295")),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--seed", "12345678901234567890"), ("--seed",)),
        (("train", "--env", "mujoco/InvertedPendulum-v5", "--eval-episodes", "0"), ("--eval-episodes", "greater than 0")),
        (("check", "x.py", "--env", "mujoco/Hopper-v5", "--states", "0"), ("--states", "greater than or equal to 1")),
        (("run", "s.yaml", "--workers", "0"), ("--workers must be at least 1",)),
    ],
)
def test_meaningless_settings_are_refused_with_one_line(tmp_path: Path, args: tuple[str, ...],
                                                        needles: tuple[str, ...]) -> None:
    (tmp_path / "x.py").write_text("def compute_dense_reward(self, action):\n    return 0.0\n")
    (tmp_path / "s.yaml").write_text("name: s\ntasks: [mujoco/Hopper-v5]\nrewards: [env]\nalgorithms: [ppo]\n"
                                     "seeds: [0]\nbudget: {steps: 4096}\n")
    extra = ("--out", str(tmp_path / "out")) if args[0] != "check" else ()
    proc = rewardlab(*args, *extra, cwd=tmp_path)
    assert_one_line_error(proc, *needles)
    assert proc.returncode == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.zip"))  # nothing trained


def test_train_never_overwrites_a_run_and_a_failed_training_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for i, body in enumerate(("1.0 - np.abs(self.pole.angle)", "2.0 - np.abs(self.pole.angle)")):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        (folder / "upright.py").write_text(f"import numpy as np\ndef compute_dense_reward(self, action):\n    return {body}\n")
        proc = rewardlab("train", "--env", "mujoco/InvertedPendulum-v5", "--reward", str(folder / "upright.py"),
                         "--steps", "1024", "--eval-episodes", "1", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in out.iterdir())
    assert runs == ["mujoco_InvertedPendulum-v5-upright-ppo-0", "mujoco_InvertedPendulum-v5-upright-ppo-0-2"]
    assert "1.0 -" in (out / runs[0] / "reward.py").read_text() and "2.0 -" in (out / runs[1] / "reward.py").read_text()

    (tmp_path / "nan.py").write_text("import numpy as np\ndef compute_dense_reward(self, action):\n"
                                     "    return np.where(np.abs(self.pole.angle) > 0.01, np.inf, 1.0)\n")
    failed = rewardlab("train", "--env", "mujoco/InvertedPendulum-v5", "--reward", str(tmp_path / "nan.py"),
                       "--steps", "1024", "--out", str(out))
    assert_one_line_error(failed, "non-finite")
    assert sorted(p.name for p in out.iterdir()) == runs  # no half-written directory left behind


def test_check_reports_the_cost_of_a_call() -> None:
    ref = Path(__file__).resolve().parents[1] / "envs" / "mujoco" / "Hopper-v5.py"
    ok = rewardlab("check", str(ref), "--env", "mujoco/Hopper-v5", "--states", "64")
    assert ok.returncode == 0, ok.stderr
    assert "us per call on 64 states" in ok.stdout


def test_a_card_given_by_path_is_named_by_its_path(tmp_path: Path) -> None:
    card = Path(__file__).parent / "fixtures" / "toy-card.yaml"
    bad = tmp_path / "my-card.yaml"
    bad.write_text(card.read_text().replace("env_id: InvertedPendulum-v5", "env_id: NoSuchEnv-v5"))
    proc = rewardlab("train", "--env", str(bad), "--reward", "env", "--steps", "1024", "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, str(bad), "env_id 'NoSuchEnv-v5' is not a mujoco env")


def test_an_internal_error_is_told_apart_from_a_verdict_and_a_user_error(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # found by a user: a crash exited 1, like a rejected program, so a script could not tell them apart
    import rewardlab.cards
    from rewardlab.cli import INTERNAL_ERROR, main

    def broken() -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rewardlab.cards, "list_cards", broken)
    monkeypatch.setattr(sys, "argv", ["rewardlab", "envs", "list"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err
    assert err.strip().splitlines()[-1].startswith("internal error: RuntimeError (a bug in rewardlab")


@pytest.mark.parametrize(("args", "name", "recorded"), [
    (("--env", "mujoco/InvertedPendulum-v5", "--steps", "2048", "--reward", "env", "--policy", "moe", "--router",
      "expert_choice", "--experts", "3"), "mujoco_InvertedPendulum-v5-env-ppo-moe_expert_choice-e3-0",
     {"shaper_params": {}, "router": "expert_choice", "n_experts": 3}),
    (("--env", "gridworld/linek-continuous", "--steps", "512", "--shaper", "explors", "--neural"),
     "gridworld_linek-continuous-explors-neural-ppo-0",
     {"shaper": "explors", "shaper_params": {"neural": True}, "reward": "explors-neural"}),
])
def test_a_train_run_records_every_setting_its_options_made(tmp_path: Path, args: tuple[str, ...], name: str,
                                                            recorded: dict) -> None:
    import yaml

    proc = rewardlab("train", "--algo", "ppo", "--eval-episodes", "1", *args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == name  # told apart from a plain run by its name
    settings = yaml.safe_load((run_dir / "train.yaml").read_text())
    extractor = settings["overrides"].get("policy_kwargs", {}).get("features_extractor_kwargs", {})
    for key, value in recorded.items():
        assert settings.get(key, extractor.get(key)) == value, key
