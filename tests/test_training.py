"""Training and evaluation: reproducible on CPU, all algorithms, artefacts written, bad rewards stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardlab.errors import RewardProgramError, UserError
from rewardlab.training import load_preset, train

UPRIGHT = '''
import numpy as np
def compute_dense_reward(self, action):
    up = 1.0 - np.abs(self.pole.angle)
    return up, {"upright": up}
'''


@pytest.fixture
def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "upright.py"
    path.write_text(UPRIGHT)
    return path


def test_same_seed_same_result_and_artefacts(tmp_path: Path, toy_card_path: Path, reward_file: Path) -> None:
    runs = [train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=3, run_dir=tmp_path / f"r{i}",
                  eval_episodes=2, eval_every=1024) for i in range(2)]
    assert runs[0].curve == runs[1].curve
    assert runs[0].eval == runs[1].eval
    other = train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=4, run_dir=tmp_path / "r2",
                  eval_episodes=2, eval_every=1024)
    assert other.eval.env_return != runs[0].eval.env_return

    run_dir = tmp_path / "r0"
    assert (run_dir / "model.zip").is_file() and (run_dir / "vecnormalize.pkl").is_file()
    assert list((run_dir / "checkpoints").glob("ppo_*_steps.zip"))
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert (run_dir / "reward.py").read_text() == UPRIGHT
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["eval"]["program_return"] == runs[0].eval.program_return
    assert [p.step for p in runs[0].curve] == [0, 1024, 2048]
    assert len(runs[0].eval.env_return) == 2 and runs[0].eval.success[0] in (True, False)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_algorithms_train_and_evaluate(tmp_path: Path, toy_card_path: Path, algo: str) -> None:
    result = train(str(toy_card_path), "env", algo, 300, seed=0, run_dir=tmp_path, eval_episodes=1)
    assert result.steps == 300 and result.eval.program_return == [None]


def test_program_is_checked_in_the_sandbox_before_training(tmp_path: Path, toy_card_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\ndef compute_dense_reward(self, action):\n    return np.ones(3)\n")
    with pytest.raises(RewardProgramError, match=r"\[output\].*shape"):
        train(str(toy_card_path), str(bad), "ppo", 1024, seed=0, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model.zip").exists()


def test_non_finite_reward_during_training_is_reported_not_zeroed(tmp_path: Path, toy_card_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    # finite on the sampled states' first rows only if unchecked; training must stop with a clear error
    sneaky.write_text("import numpy as np\ndef compute_dense_reward(self, action):\n"
                      "    return np.where(np.abs(self.pole.angle) > 0.05, np.inf, 1.0)\n")
    with pytest.raises(RewardProgramError, match="non-finite"):
        train(str(toy_card_path), str(sneaky), "ppo", 2048, seed=0, run_dir=tmp_path / "run", check=False)


def test_presets_come_from_the_agents_folder(toy_card_path: Path) -> None:
    from rewardlab.cards import load_card

    card = load_card("mujoco/InvertedPendulum-v5")
    ppo = load_preset(card, "ppo")
    assert ppo["n_envs"] == 4 and ppo["n_steps"] == 256  # the env override over the default
    assert load_preset(card, "ppo", {"n_steps": 64})["n_steps"] == 64
    assert load_preset(load_card("metaworld/reach-v3"), "sac")["policy_kwargs"]["net_arch"] == [256, 256, 256]
    with pytest.raises(UserError, match="unknown algorithm"):
        load_preset(card, "dqn")


def test_metaworld_trains_with_reference_reward(tmp_path: Path) -> None:
    result = train("metaworld/reach-v3", "reference", "sac", 300, seed=0, run_dir=tmp_path, eval_episodes=1)
    assert result.eval.success[0] in (True, False)
    assert result.eval.length == [500]
    assert result.eval.program_return[0] > 0


def test_final_evaluation_is_the_last_curve_point(tmp_path: Path, toy_card_path: Path, reward_file: Path) -> None:
    result = train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=1, run_dir=tmp_path, eval_episodes=2,
                   eval_every=1024)
    last = result.curve[-1]
    assert last.step == result.steps == 2048
    assert last.return_env == pytest.approx(sum(result.eval.env_return) / 2)
