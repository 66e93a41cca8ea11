"""The sb3 trainer's neural REINFORCE (rewardlab/training/reinforce.py): its loss gradient against the
hand-computed REINFORCE gradient, ε-mixing by hand, learning on a gridworld, neural ExploRS on it, and the
one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardlab.cards import load_card
from rewardlab.config import TrainConfig
from rewardlab.errors import UserError
from rewardlab.shaping.explors import NeuralExplorationBonus, NeuralExplorationGuidedShaping
from rewardlab.training.presets import load_preset, minimum_steps
from rewardlab.training.reinforce import REINFORCE, discounted_returns, mixed_logits
from rewardlab.training.sb3 import SB3Trainer


def _bandit_env() -> DummyVecEnv:
    """Three observations, two actions; only the spaces matter to the loss tests."""

    class Env(gym.Env):  # type: ignore[type-arg]
        observation_space = gym.spaces.Discrete(3)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
            return 0, {}

        def step(self, action: int) -> tuple[int, float, bool, bool, dict]:  # type: ignore[type-arg]
            return 0, 0.0, True, False, {}

    return DummyVecEnv([Env])


def test_returns_are_discounted_sums_of_the_rest_of_the_episode() -> None:
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5), [1.5, 1.0, 2.0])
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 0.0, 2.0]), 1.0), [3.0, 2.0, 2.0])


def test_epsilon_mixing_by_hand() -> None:
    logits = th.tensor([[0.0, np.log(3.0)]])  # softmax: 0.25, 0.75
    probs = th.exp(mixed_logits(logits, 0.2))
    np.testing.assert_allclose(probs.numpy(), [[0.8 * 0.25 + 0.1, 0.8 * 0.75 + 0.1]], rtol=1e-6)
    model = REINFORCE("MlpPolicy", _bandit_env(), epsilon=0.2, seed=0, device="cpu")
    obs, _ = model.policy.obs_to_tensor(np.array([1]))
    dist = model.policy.get_distribution(obs).distribution  # what the ExploRS shapers read
    raw = th.softmax(model.policy.action_net(model.policy.mlp_extractor.forward_actor(
        model.policy.extract_features(obs))), dim=-1)
    np.testing.assert_allclose(dist.probs.detach().numpy(), (0.8 * raw + 0.1).detach().numpy(), rtol=1e-5)
    assert float(dist.probs.detach().min()) >= 0.1 - 1e-7


def test_loss_gradient_equals_the_hand_computed_reinforce_gradient() -> None:
    """A 2-step episode (s=0, a=1, r=1; s=2, a=0, r=3), γ = 0.9, ε = 0.1: G = (1 + 0.9·3, 3) and
    ∇J = −Σ_t G_t ∇ log π_ε(a_t|s_t), with π_ε computed here from the policy's raw logits."""
    gamma, eps = 0.9, 0.1
    model = REINFORCE("MlpPolicy", _bandit_env(), gamma=gamma, epsilon=eps, seed=0, device="cpu",
                      policy_kwargs={"net_arch": {"pi": [8], "vf": []}})
    episode = ([np.array(0), np.array(2)], [np.array(1), np.array(0)], [1.0, 3.0])
    params = list(model.policy.mlp_extractor.policy_net.parameters()) + list(model.policy.action_net.parameters())

    loss = model.reinforce_loss([episode])
    grads = th.autograd.grad(loss, params)

    policy = model.policy
    obs = th.nn.functional.one_hot(th.tensor([0, 2]), 3).float()
    probs = (1 - eps) * th.softmax(policy.action_net(policy.mlp_extractor.policy_net(obs)), dim=-1) + eps / 2
    returns = th.tensor([1.0 + gamma * 3.0, 3.0])
    hand = -(returns[0] * th.log(probs[0, 1]) + returns[1] * th.log(probs[1, 0]))
    assert float(loss) == pytest.approx(float(hand), rel=1e-5)
    for g, h in zip(grads, th.autograd.grad(hand, params), strict=True):
        np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_one_train_step_is_one_adam_step_on_that_loss() -> None:
    model = REINFORCE("MlpPolicy", _bandit_env(), learning_rate=1e-2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.action_net.parameters()]
    model._batch = [([np.array(0)], [np.array(1)], [1.0])]
    model._logger = __import__("stable_baselines3.common.logger", fromlist=["configure"]).configure(None, [""])
    model.train()
    after = list(model.policy.action_net.parameters())
    assert model._n_updates == 1 and model._batch == []
    assert any(not th.equal(b, a) for b, a in zip(before, after, strict=True))
    obs, _ = model.policy.obs_to_tensor(np.array([0]))
    assert float(model.policy.get_distribution(obs).distribution.probs[0, 1]) > 0.5  # a rewarded action rises


def test_learns_room_from_its_sparse_reward(tmp_path: Path) -> None:
    """ROOM's deterministic untrained policy never reaches the goal; a few thousand steps of REINFORCE (lr 3e-3,
    a labelled deviation from the paper's 1e-5, which learns nothing this soon) do."""
    from rewardlab.training import train

    result = train("gridworld/room", "env", "reinforce", 8000, 0, tmp_path / "t", eval_episodes=20,
                   preset_overrides={"learning_rate": 3e-3})
    assert result.algo == "reinforce" and result.steps == 8000
    assert result.curve[0].return_env == 0.0
    assert np.mean(result.eval.env_return) >= 3.0  # ≥ 30% of the episodes reach the goal (10 each)
    loaded = REINFORCE.load(result.model_path, device="cpu")  # what checkpoints and play read back
    assert loaded.epsilon == 0.05 and loaded.policy.epsilon == 0.05
    assert loaded.predict(np.array([8]), deterministic=True)[0].shape == (1,)


def test_neural_explors_runs_with_reinforce_through_a_spec(tmp_path: Path) -> None:
    from rewardlab.runs.runner import run_experiment

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "explors-reinforce", "tasks": ["gridworld/chain"],
        "rewards": [{"name": "explors", "shaper": {"name": "explors", "neural": True, "warmup": 2, "update_every": 2}}],
        "algorithms": ["reinforce"], "seeds": [0], "budget": {"steps": 1200}, "evaluation": {"episodes": 3},
        "workers": 1}))
    summary = run_experiment(spec, out=tmp_path / "runs", workers=1)
    assert summary.counts.get("done") == 1
    trial = next((tmp_path / "runs").glob("explors-reinforce-*/trials/*"))
    result = json.loads((trial / "result.json").read_text())
    assert result["algo"] == "reinforce" and result["steps"] == 1200
    assert (trial / "explors_weights.pt").is_file()
    saved = th.load(trial / "explors_weights.pt", weights_only=True)
    assert saved["episodes"] == 30 and saved["updates"] >= 10  # 1200 / 40-step episodes; N_r = 2 after warm-up


def test_on_policy_reinforce_passes_the_shaper_learner_check_and_off_policy_is_refused() -> None:
    assert NeuralExplorationGuidedShaping.learner_problem("sb3", "reinforce") is None
    assert NeuralExplorationGuidedShaping.learner_problem("sb3", "ppo") is None
    assert "dqn learns off-policy" in (NeuralExplorationGuidedShaping.learner_problem("sb3", "dqn") or "")
    assert NeuralExplorationBonus.learner_problem("sb3", "dqn") is None  # the count bonus fits any learner
    assert "sb3 trainer" in (NeuralExplorationGuidedShaping.learner_problem("tabular", "reinforce") or "")


def test_preset_and_minimum_budget() -> None:
    room, chain = load_card("gridworld/room"), load_card("gridworld/chain")
    params = load_preset(room, "reinforce")
    assert (params["learning_rate"], params["epsilon"], params["gamma"]) == (1e-5, 0.05, 0.95)
    assert params["policy_kwargs"]["net_arch"]["pi"] == [256]
    assert load_preset(chain, "reinforce")["gamma"] == 0.99
    assert minimum_steps("reinforce", params, room.episode_steps)[0] == 50
    assert minimum_steps("reinforce", {"n_envs": 4, "episodes_per_update": 6}, 40)[0] == 2 * 4 * 40
    config = TrainConfig.model_validate({"algo": "reinforce", "budget": {"steps": 49}})
    with pytest.raises(UserError, match="less than one reinforce update of the sb3 trainer"):
        SB3Trainer().validate(room, config)
    SB3Trainer().validate(room, TrainConfig.model_validate({"algo": "reinforce", "budget": {"steps": 50}}))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epsilon": 1.5}, "epsilon must be in [0, 1]"),
    ({"episodes_per_update": 0}, "episodes_per_update must be >= 1"),
])
def test_meaningless_settings_are_refused_in_one_line(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        REINFORCE("MlpPolicy", _bandit_env(), **kwargs)


def test_epsilon_on_box_actions_is_refused() -> None:
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    with pytest.raises(UserError, match="needs discrete actions.*set epsilon: 0"):
        REINFORCE("MlpPolicy", env, epsilon=0.05)
    REINFORCE("MlpPolicy", env, epsilon=0.0, device="cpu")  # a plain Gaussian policy
