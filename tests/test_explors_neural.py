"""Neural ExploRS for SB3 learners: the count bonus by hand, R_φ's bound, the sign of one meta-gradient
step on a hand-made batch, PPO on a gridworld through the trainer, and refusals in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from rewardlab.cards import load_card
from rewardlab.errors import UserError
from rewardlab.shaping.base import check_shaper_for
from rewardlab.shaping.explors import NEURAL_DEFAULTS, WEIGHTS_NAME, NeuralExploRS, load_neural_explors
from rewardlab.sources import parse_source
from rewardlab.training import train


def _state(obs_space: spaces.Space, act_space: spaces.Space, psi: np.ndarray | None = None,
           **settings: Any) -> NeuralExploRS:
    return NeuralExploRS(obs_space, act_space, gamma=0.5, settings={**NEURAL_DEFAULTS, **settings}, psi=psi)


def test_count_bonus_over_psi_matches_a_hand_computation() -> None:
    psi = np.array([0, 1, 1, 2])  # states 1 and 2 share a cell
    st = _state(spaces.Discrete(4), spaces.Discrete(2), psi=psi)
    assert st.bonus(1, terminal=False) == 1.0  # λ / √((λ/B)² + 0)
    st.count(1)
    assert st.bonus(2, terminal=False) == pytest.approx(1 / np.sqrt(2))  # counted through ψ(1) = ψ(2)
    st.count(2)
    st.count(1)
    assert st.bonus(1, terminal=False) == pytest.approx(0.5)
    assert st.bonus(3, terminal=False) == 1.0
    assert st.bonus(3, terminal=True) == 0.0  # nothing at a terminal state
    # λ = 2, B_max = 0.5: 2 / √(16 + 3) after three visits
    other = _state(spaces.Discrete(4), spaces.Discrete(2), bonus_lambda=2.0, bonus_max=0.5)
    for _ in range(3):
        other.count(0)
    assert other.bonus(0, terminal=False) == pytest.approx(2 / np.sqrt(19))
    # Box observations: counted on a count_resolution grid
    box = _state(spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
    box.count(np.array([0.12, 0.31]))
    assert box.bonus(np.array([0.18, 0.39]), terminal=False) == pytest.approx(1 / np.sqrt(2))
    assert box.bonus(np.array([0.21, 0.39]), terminal=False) == 1.0


def test_learned_reward_is_bounded_by_its_scale() -> None:
    st = _state(spaces.Box(-1, 1, (3,)), spaces.Discrete(4), warmup=0)
    with torch.no_grad():
        for p in st.reward.parameters():
            p.mul_(1000.0)  # saturate tanh
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 3))
    r = st.learned(obs, np.arange(64) % 4)
    assert np.abs(r).max() <= 0.1 + 1e-6 and np.abs(r).max() > 0.09
    cont = _state(spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (2,)), warmup=0, reward_scale=0.5)
    assert np.abs(cont.learned(obs, np.ones((64, 2)))).max() <= 0.5 + 1e-6


def _relative(st: NeuralExploRS, s: int, a: int, probs: torch.Tensor) -> float:
    """R_φ(s, a) − E_{b∼π} R_φ(s, b): what the meta-gradient moves with the advantage's sign."""
    with torch.no_grad():
        r = st.reward.all_actions(st.features(np.array([s])))[0]
    return float(r[a] - (probs * r).sum())


@pytest.mark.parametrize("G", [5.0, -5.0])
def test_one_meta_gradient_step_follows_the_sign_of_the_advantage(G: float) -> None:
    st = _state(spaces.Discrete(3), spaces.Discrete(2))
    with torch.no_grad():  # V ≡ 0, so the advantage is Ḡ itself
        last = st.critic[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.zero_()
    probs = torch.tensor([0.3, 0.7])
    x = st.features(np.array([1]))
    with torch.no_grad():
        r_before = st.reward.all_actions(x)[0].clone()
    before = _relative(st, 1, 0, probs)
    st.end_episode(np.array([1]), np.array([0]), np.array([G]))  # one step: s = 1, a = 0, Ḡ = G
    losses = st.update(lambda obs: torch.distributions.Categorical(probs=probs.expand(len(obs), 2)))
    after = _relative(st, 1, 0, probs)
    assert np.sign(after - before) == np.sign(G)  # the quantity the loss moves, to first order
    with torch.no_grad():
        change = (st.reward.all_actions(x)[0] - r_before).numpy()
    # and R_φ itself (checked on seeds 0-4): the taken action with the advantage's sign, the other against it
    assert np.sign(change[0]) == np.sign(G) and np.sign(change[1]) == -np.sign(G)
    assert np.isfinite(losses["meta_loss"]) and losses["critic_loss"] > 0
    # the critic moved towards Ḡ
    with torch.no_grad():
        assert np.sign(float(st.critic(st.features(np.array([1])))[0, 0])) == np.sign(G)


def test_continuous_actions_update_with_sampled_expectation() -> None:
    st = _state(spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)), samples=4)
    st.end_episode(np.zeros((3, 2)), np.full((3, 1), 0.5), np.array([1.0, 0.0, 2.0]))
    losses = st.update(lambda obs: torch.distributions.Normal(torch.zeros(len(obs), 1), torch.ones(len(obs), 1)))
    assert np.isfinite(losses["meta_loss"]) and st.updates == 1


class _Infos(BaseCallback):
    """Keeps every step's infos and shaped rewards."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]] = []

    def _on_step(self) -> bool:
        self.steps.append((np.array(self.locals["rewards"]), np.array(self.locals["dones"]),
                           [dict(i) for i in self.locals["infos"]]))
        return True


def test_ppo_trains_on_neural_explors_and_the_info_keeps_the_original_reward(tmp_path: Path) -> None:
    source = parse_source({"name": "explors-neural",
                           "shaper": {"name": "explors", "neural": True, "warmup": 2, "update_every": 2}})
    recorder = _Infos()
    result = train("gridworld/linek-continuous", source, "ppo", 1024, seed=0, run_dir=tmp_path, eval_episodes=2,
                   callbacks=[recorder])
    assert result.steps == 1024
    rewards = np.concatenate([r for r, _, _ in recorder.steps])
    dones = np.concatenate([d for _, d, _ in recorder.steps])
    infos = [i for _, _, step in recorder.steps for i in step]
    terminated = dones & ~np.array([bool(i.get("TimeLimit.truncated", False)) for i in infos])
    unshaped = np.array([i["unshaped_reward"] for i in infos])
    bonus = np.array([i["explore_bonus"] for i in infos])
    exploit = np.array([i["exploit_reward"] for i in infos])
    assert set(np.unique(unshaped)) <= {0.0, 10.0}  # the env's own reward
    np.testing.assert_allclose(rewards, unshaped + bonus + exploit, atol=1e-5)
    assert terminated.any() and not bonus[terminated].any()  # no bonus for entering the terminal state
    assert bonus.max() == 1.0 and 0 < bonus[~terminated].min() < 0.2  # ψ has 41 cells: counts grow fast
    assert np.abs(exploit).max() <= 0.1 and np.count_nonzero(exploit) > 0  # added after the warm-up
    assert not exploit[:4].any()  # not during it
    # the nets are saved at the end of training, loadable, and trained (not the seeded initial weights)
    reward, critic, meta = load_neural_explors(tmp_path / WEIGHTS_NAME)
    assert meta["episodes"] == int(dones.sum()) and meta["updates"] > 0 and meta["features"] == 201
    fresh = NeuralExploRS(spaces.Discrete(201), spaces.Discrete(3), 0.95, NEURAL_DEFAULTS, seed=0)
    assert not torch.equal(reward.net[0].weight, fresh.reward.net[0].weight)
    assert not torch.equal(critic[0].weight, fresh.critic[0].weight)
    with torch.no_grad():
        table = reward.all_actions(torch.eye(201))
    assert table.shape == (201, 3) and table.abs().max() <= 0.1


def test_neural_explors_refuses_bad_settings_and_off_policy_learners(tmp_path: Path) -> None:
    card = load_card("gridworld/chain")
    for params, message in [({"warmup": -1}, "warmup must be a whole number >= 0"),
                            ({"lr_reward": 0}, "lr_reward must be a positive number"),
                            ({"update_every": 2.5}, "update_every must be a whole number >= 1"),
                            ({"eta_phi": 0.1}, "takes bonus_lambda")]:
        with pytest.raises(UserError, match=message):
            check_shaper_for(card, "explors", {"neural": True, **params})
    with pytest.raises(UserError, match="add neural: true"):  # the tabular variant, given a neural setting
        check_shaper_for(card, "explors", {"warmup": 10})
    with pytest.raises(UserError, match="neural must be true or false"):
        check_shaper_for(card, "explors", {"neural": "yes"})
    tabular = parse_source({"name": "x", "shaper": {"name": "explors"}})
    with pytest.raises(UserError, match="give it neural: true"):
        train("gridworld/chain", tabular, "ppo", 512, seed=0, run_dir=tmp_path / "ppo")
    neural = parse_source({"name": "x", "shaper": {"name": "explors", "neural": True}})
    with pytest.raises(UserError, match="needs an on-policy learner"):
        train("gridworld/chain", neural, "dqn", 1000, seed=0, run_dir=tmp_path / "dqn")
    with pytest.raises(UserError, match="runs with the sb3 trainer"):
        train("gridworld/chain", neural, "reinforce", 10, seed=0, run_dir=tmp_path / "tab", trainer="tabular")
