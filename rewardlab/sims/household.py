"""rewardlab's own household environment (:mod:`rewardlab.household`), for E2CL and language agents."""

from __future__ import annotations

import gymnasium as gym

from rewardlab.cards import EnvCard
from rewardlab.household.env import HouseholdEnv
from rewardlab.sims.base import Simulator

ENV_IDS = ("Household-v0",)


class HouseholdSimulator(Simulator):
    """``HouseholdEnv(**card.make_kwargs, max_steps=card.episode_steps)``; ``make_kwargs`` picks the
    split (``train``, ``unseen_compositions``, ``unseen_homes``) and optionally a fixed home or task."""

    name = "household"
    packages = ("gymnasium",)

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        if card.env_id not in ENV_IDS:
            raise ValueError(f"unknown household env {card.env_id}")
        env = HouseholdEnv(max_steps=card.episode_steps, render_mode=render_mode, **card.make_kwargs)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def known_env_ids(self) -> list[str]:
        return list(ENV_IDS)
