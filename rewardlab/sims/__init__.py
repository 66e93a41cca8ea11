"""Simulator adapters: make a gymnasium env from an env card.

Each adapter module exposes ``make_env(card, seed, render_mode)``; :func:`make_env` dispatches on
``card.simulator``. Adapters import their simulator lazily so that a missing optional one (ManiSkill3)
only fails when a card for it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError


def make_env(card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
    """Create the env a card describes, seeded, with its time limit set to ``card.episode_steps``.

    :param card: the env card
    :param seed: seed for the env's task sampling and its action space
    :param render_mode: gymnasium render mode (``rgb_array`` for videos), or None
    """
    try:
        adapter: Any = importlib.import_module(f"rewardlab.sims.{card.simulator}")
    except ImportError as e:
        raise UserError(f"simulator {card.simulator!r} for {card.id} is not installed ({e})") from None
    return adapter.make_env(card, seed=seed, render_mode=render_mode)
