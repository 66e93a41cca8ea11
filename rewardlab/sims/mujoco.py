"""Gymnasium's MuJoCo tasks (v5): HalfCheetah, Hopper, Walker2d, Ant, Reacher, InvertedPendulum."""

from __future__ import annotations

import gymnasium as gym

from rewardlab.cards import EnvCard
from rewardlab.sims.base import Simulator


class MujocoSimulator(Simulator):
    """``gym.make(card.env_id)`` with the card's episode length (gymnasium's ``TimeLimit``)."""

    name = "mujoco"
    packages = ("gymnasium", "mujoco")

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        env = gym.make(
            card.env_id,
            max_episode_steps=card.episode_steps,
            render_mode=render_mode,
            disable_env_checker=True,
            **card.make_kwargs,
        )
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def known_env_ids(self) -> list[str]:
        return sorted(k for k, spec in gym.registry.items() if "mujoco" in str(spec.entry_point))
