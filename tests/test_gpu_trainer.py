"""The ``gpu`` trainer (PPO on batched torch tensors) on the CPU: with a batched stand-in for the GPU
simulator (real gymnasium envs stepped together, tensors in and out, the card's states as a torch
batch), and end to end on ManiSkill's one-env CPU backend. No GPU exists here; the same code runs on
``physx_cuda`` (benchmarks/gpu_maniskill.sh)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rewardlab.cards import EnvCard, load_card  # noqa: E402
from rewardlab.config import Budget, Evaluation, TrainConfig  # noqa: E402
from rewardlab.errors import RewardProgramError, UserError  # noqa: E402
from rewardlab.program import RewardProgram, load_program  # noqa: E402
from rewardlab.sims.base import make_env  # noqa: E402
from rewardlab.sources import parse_source, resolve_source  # noqa: E402
from rewardlab.state import StateExtractor  # noqa: E402
from rewardlab.training import get_trainer  # noqa: E402
from rewardlab.training.gpu import DeviceReward, GPUTrainer, PPOConfig  # noqa: E402


class GymBatchStandIn:
    """STAND-IN for the GPU simulator: ``num_envs`` real gymnasium envs of a card stepped together,
    with the batched-torch interface the GPU trainer needs (states before auto-reset, partial resets)."""

    def __init__(self, card: EnvCard, extractor: StateExtractor, num_envs: int, device: Any, evaluation: bool):
        self.card, self.extractor, self.num_envs, self.device = card, extractor, num_envs, torch.device(device)
        self.envs = [make_env(card) for _ in range(num_envs)]
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(self.envs[0].action_space.shape))

    def reset(self, seed: int) -> Any:
        return torch.as_tensor(np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(self.envs)]),
                               dtype=torch.float32, device=self.device)

    def step(self, action: Any) -> tuple[Any, ...]:
        out = [e.step(a) for e, a in zip(self.envs, action.cpu().numpy())]
        reached = np.stack([o[0] for o in out])
        sim = np.stack([self.extractor.sim_vector(e) for e in self.envs])
        states = torch.as_tensor(self.extractor.batch(reached, sim), dtype=torch.float32, device=self.device)
        terminated = torch.tensor([o[2] for o in out], device=self.device)
        truncated = torch.tensor([o[3] for o in out], device=self.device)
        obs = reached.copy()
        for i, (o, e) in enumerate(zip(out, self.envs)):
            if o[2] or o[3]:
                obs[i] = e.reset()[0]
        t = torch.as_tensor
        return (t(obs, dtype=torch.float32, device=self.device), states,
                t([o[1] for o in out], dtype=torch.float32, device=self.device), terminated, truncated,
                t([bool(o[4].get("success", False)) for o in out], device=self.device))

    def close(self) -> None:
        for e in self.envs:
            e.close()


def _config(steps: int, **overrides: Any) -> TrainConfig:
    return TrainConfig(trainer="gpu", algo="ppo", seed=0, budget=Budget(steps=steps),
                       evaluation=Evaluation(episodes=4, every=steps // 2), overrides=overrides)


def test_gpu_trainer_is_registered() -> None:
    assert isinstance(get_trainer("gpu"), GPUTrainer)


@pytest.mark.slow
def test_ppo_on_batched_torch_states_learns_with_the_stand_in(tmp_path: Path) -> None:
    card = load_card("mujoco/InvertedPendulum-v5")
    trainer = GPUTrainer(env_factory=GymBatchStandIn, device="cpu")
    reward = resolve_source(parse_source("reference"), card)
    config = _config(16_000, num_envs=8, num_steps=64, gamma=0.99, gae_lambda=0.95, num_minibatches=8,
                     update_epochs=8, hidden=64, learning_rate=1e-3)
    result = trainer.train(card, reward, config, tmp_path)
    first, last = result.curve[0], result.curve[-1]
    assert result.steps >= 16_000 and result.trainer == "gpu"
    assert last.length is not None and first.length is not None and last.length > 4 * first.length, result.curve
    assert all(r is not None for r in result.eval.program_return)  # the program's reward, computed on torch
    assert json.loads((tmp_path / "result.json").read_text())["trainer"] == "gpu"
    assert (tmp_path / "model.pt").is_file()


def test_gpu_trainer_runs_end_to_end_on_maniskill_cpu_backend(tmp_path: Path) -> None:
    pytest.importorskip("mani_skill")
    card = load_card("maniskill/PushCube-v1")
    trainer = GPUTrainer(device="cpu")  # ManiSkill's physx_cpu: one env
    reward = resolve_source(parse_source("reference"), card)
    config = TrainConfig(trainer="gpu", algo="ppo", seed=0, budget=Budget(steps=100),
                         evaluation=Evaluation(episodes=1), overrides={"num_steps": 50, "num_minibatches": 2})
    result = trainer.train(card, reward, config, tmp_path, check=False)
    assert result.steps == 100
    assert result.eval.program_return[0] is not None and np.isfinite(result.eval.program_return[0])
    assert set(result.eval.components[0]) == {"reach", "push", "on_table"}
    assert result.eval.success[0] is not None


def test_non_maniskill_card_is_refused_by_the_default_env() -> None:
    with pytest.raises(UserError, match="runs ManiSkill3 cards"):
        GPUTrainer(device="cpu").validate(load_card("mujoco/InvertedPendulum-v5"), _config(1000))


def test_budget_below_one_rollout_is_refused() -> None:
    trainer = GPUTrainer(env_factory=GymBatchStandIn, device="cpu")
    with pytest.raises(UserError, match="less than one rollout"):
        trainer.validate(load_card("mujoco/InvertedPendulum-v5"), _config(100, num_envs=8, num_steps=64))


@pytest.mark.parametrize(("overrides", "message"), [({"num_env": 4}, "unknown gpu ppo setting 'num_env'"),
                                                    ({"num_envs": 0}, "num_envs must be at least 1"),
                                                    ({"gamma": 1.5}, "gamma must be in")])
def test_meaningless_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        PPOConfig.from_overrides(overrides)


def test_non_finite_program_reward_stops_training() -> None:
    card = load_card("mujoco/InvertedPendulum-v5")
    program = RewardProgram("import numpy as np\ndef compute_dense_reward(self, action):\n"
                            "    return self.pole.angle / np.zeros_like(self.pole.angle)\n")
    extractor = StateExtractor.for_program(card, program.source)
    reward = DeviceReward(card, extractor, program, sparse=False, device="cpu")
    states = torch.zeros((3, extractor.dim), dtype=torch.float32)
    with pytest.raises(RewardProgramError, match="not finite"):
        reward(states, torch.zeros((3, 1)), torch.zeros(3), torch.zeros(3, dtype=torch.bool))


def test_program_reward_is_a_tensor_on_the_states_device() -> None:
    card = load_card("mujoco/InvertedPendulum-v5")
    program = load_program(card.reference_reward_path())
    extractor = StateExtractor.for_program(card, program.source)
    reward = DeviceReward(card, extractor, program, sparse=False, device="cpu")
    total, parts = reward(torch.zeros((5, extractor.dim)), torch.zeros((5, 1)), torch.zeros(5), torch.zeros(5, dtype=torch.bool))
    assert isinstance(total, torch.Tensor) and total.shape == (5,) and total.dtype == torch.float32


def test_benchmark_measures_the_ratio_and_never_invents_gpu_figures(tmp_path: Path) -> None:
    pytest.importorskip("mani_skill")
    from benchmarks import maniskill as bench

    out = tmp_path / "bench.json"
    result = bench.main(["--pairs", "2", "--steps", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    ratio = result["program_over_env"]
    assert ratio["pairs"] == 2 and len(ratio["ratios"]) == 2 and ratio["median"] > 0
    assert ratio["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert result["gpu_steps_per_s"] == {"1024": bench.NO_GPU, "4096": bench.NO_GPU, "16384": bench.NO_GPU}
        assert result["machine"]["cuda"] is False


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_maniskill.sh on one)")


@CUDA
def test_physx_cuda_rollout_keeps_states_and_rewards_on_the_gpu() -> None:
    pytest.importorskip("mani_skill")
    from rewardlab.sims.maniskill import ManiSkillBatch

    card = load_card("maniskill/PickCube-v1")
    program = load_program(card.reference_reward_path())
    extractor = StateExtractor.for_program(card, program.source)
    env = ManiSkillBatch(card, extractor, num_envs=1024, device="cuda")
    env.reset(seed=0)
    reward = DeviceReward(card, extractor, program, sparse=False, device="cuda")
    numpy_reward = program.bind(card)
    for _ in range(5):
        action = torch.rand((1024, env.act_dim), device="cuda") * 2 - 1
        obs, states, env_reward, terminated, truncated, success = env.step(action)
        assert states.is_cuda and obs.is_cuda and states.shape == (1024, extractor.dim)
        total, _ = reward(states, action, env_reward, success)
        assert total.is_cuda and total.shape == (1024,)
        flat = states.double().cpu().numpy()
        expected, _ = numpy_reward(extractor.view(flat), action.double().cpu().numpy())
        np.testing.assert_allclose(total.cpu().numpy(), expected, rtol=1e-5, atol=1e-5)
    env.close()


@CUDA
def test_gpu_trainer_trains_on_physx_cuda(tmp_path: Path) -> None:
    pytest.importorskip("mani_skill")
    card = load_card("maniskill/PickCube-v1")
    reward = resolve_source(parse_source("reference"), card)
    config = TrainConfig(trainer="gpu", algo="ppo", seed=0, budget=Budget(steps=512 * 50 * 4),
                         evaluation=Evaluation(episodes=16), overrides={"num_envs": 512})
    result = GPUTrainer(device="cuda").train(card, reward, config, tmp_path)
    assert result.steps >= 512 * 50 * 4 and len(result.eval.env_return) == 16
