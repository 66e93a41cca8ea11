"""Reward wrappers: one batched call per step, the terminal state at episode ends, env reward kept."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardlab.cards import load_card
from rewardlab.program import load_program
from rewardlab.sims import make_env
from rewardlab.state import StateExtractor
from rewardlab.wrappers import ProgramReward, ProgramRewardVector, RewardVecEnv, StateCapture

# Reads an observation field (pole angle) and a simulator field (cart velocity, data.qvel[0]).
PROGRAM = '''
import numpy as np
def compute_dense_reward(self, action):
    tilt = np.abs(self.pole.angle)
    speed = np.abs(self.cart.velocity)
    return 1.0 - tilt - 0.1 * speed, {"tilt": -tilt, "speed": -0.1 * speed}
'''


@pytest.fixture
def setup(toy_card_path: Path):
    card = load_card(toy_card_path)
    return card, StateExtractor(card), load_program(PROGRAM)


def _reference_rewards(card, extractor, program, seed: int, actions: np.ndarray) -> tuple[list[float], list[bool]]:
    """The program reward of a plain single env, computed straight after each step (no auto-reset)."""
    env = ProgramReward(make_env(card, seed=seed), extractor, program.bind(card))
    env.reset(seed=seed)
    rewards, dones = [], []
    for a in actions:
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
        dones.append(term or trunc)
        assert "env_reward" in info and set(info["reward_components"]) == {"tilt", "speed"}
        if term or trunc:
            env.reset()
    return rewards, dones


def test_vec_reward_uses_the_terminal_state_not_the_reset_state(setup) -> None:
    card, extractor, program = setup
    rng = np.random.default_rng(0)
    actions = rng.uniform(-3, 3, size=(300, 1))
    expected, dones = _reference_rewards(card, extractor, program, 7, actions)
    assert sum(dones) >= 3, "the rollout must cross episode ends for this test to mean anything"

    venv = DummyVecEnv([lambda: StateCapture(make_env(card, seed=7), extractor)])
    venv.seed(7)
    venv = RewardVecEnv(venv, extractor, program.bind(card))
    venv.reset()
    got, reset_based = [], []
    for a in actions:
        obs, r, done, infos = venv.step(a[None])
        got.append(float(r[0]))
        if done[0]:
            # what a wrapper that forgot the terminal state would compute: the reset observation
            reset_based.append(1.0 - abs(obs[0][1]))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    terminal = [g for g, d in zip(got, dones) if d]
    assert not np.allclose(terminal, reset_based, atol=1e-3)


def test_env_reward_kept_and_components_summed_per_episode(setup) -> None:
    card, extractor, program = setup
    venv = DummyVecEnv([lambda i=i: StateCapture(make_env(card, seed=i), extractor) for i in range(3)])
    venv.seed(0)
    venv = RewardVecEnv(venv, extractor, program.bind(card))
    venv.reset()
    rng = np.random.default_rng(1)
    running_env = np.zeros(3)
    running_prog = np.zeros(3)
    finished = 0
    for _ in range(200):
        _, r, dones, infos = venv.step(rng.uniform(-3, 3, size=(3, 1)))
        running_prog += r
        running_env += [info["env_reward"] for info in infos]
        for i in np.flatnonzero(dones):
            stats = infos[i]["episode_stats"]
            assert stats["env_return"] == pytest.approx(running_env[i])
            assert stats["program_return"] == pytest.approx(running_prog[i], rel=1e-5)
            assert sum(stats["components"].values()) + stats["length"] == pytest.approx(stats["program_return"], rel=1e-5)
            assert stats["success"] is False  # terminated early: not survived
            running_env[i] = running_prog[i] = 0
            finished += 1
    assert finished >= 5


def test_native_reward_passes_through_with_statistics(setup) -> None:
    card, extractor, _ = setup
    venv = RewardVecEnv(DummyVecEnv([lambda: make_env(card, seed=0)]), extractor, None)
    venv.reset()
    for _ in range(100):
        _, r, done, infos = venv.step(np.zeros((1, 1)))
        assert r[0] == (0.0 if done[0] else 1.0)  # InvertedPendulum's own reward: 1 while the pole is up
        if done[0]:
            assert infos[0]["episode_stats"]["program_return"] is None
            break


def test_survived_success_is_true_at_the_time_limit(tmp_path: Path, toy_card_path: Path) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(toy_card_path.read_text().replace("episode_steps: 1000", "episode_steps: 5"))
    card = load_card(path)
    extractor = StateExtractor(card)
    venv = RewardVecEnv(DummyVecEnv([lambda: make_env(card, seed=0)]), extractor, None)
    venv.reset()
    for _ in range(5):
        _, _, done, infos = venv.step(np.zeros((1, 1)))
    assert done[0] and infos[0]["episode_stats"]["success"] is True


def test_gymnasium_vector_wrapper_matches_single_envs(setup) -> None:
    card, extractor, program = setup
    rng = np.random.default_rng(3)
    actions = rng.uniform(-3, 3, size=(150, 2, 1))
    venv = gym.vector.SyncVectorEnv([lambda i=i: StateCapture(make_env(card, seed=10 + i), extractor) for i in range(2)])
    venv = ProgramRewardVector(venv, extractor, program.bind(card))
    venv.reset(seed=[10, 11])
    got, masks = [], []
    resetting = np.zeros(2, dtype=bool)
    for a in actions:
        _, r, term, trunc, info = venv.step(a)
        got.append(r)
        masks.append(~resetting)
        assert np.all(r[resetting] == 0.0)
        resetting = term | trunc
    got, masks = np.array(got), np.array(masks)
    for i in range(2):
        # the same env alone, fed only the actions that were not spent on a reset step
        expected, _ = _reference_rewards(card, extractor, program, 10 + i, actions[masks[:, i], i])
        np.testing.assert_allclose(got[masks[:, i], i], expected, rtol=1e-6, atol=1e-6)


def test_metaworld_success_comes_from_info(tmp_path: Path) -> None:
    card = load_card("metaworld/reach-v3")
    extractor = StateExtractor(card)
    venv = RewardVecEnv(DummyVecEnv([lambda: make_env(card, seed=0)]), extractor, None)
    obs = venv.reset()
    import metaworld.policies as policies

    expert = policies.SawyerReachV3Policy()
    for _ in range(card.episode_steps):
        obs, _, done, infos = venv.step(expert.get_action(obs[0])[None])
        if done[0]:
            break
    assert infos[0]["episode_stats"]["success"] is True
