"""The simulator adapter interface, and the two things every caller needs from it: an env made from a
card (:func:`make_env`) and a card checked against its live env (:func:`verify_card`).

An adapter knows one simulator family: how to make a seeded env with the card's episode length,
whether the env ends episodes by itself (MetaWorld's ``max_path_length``), and, when the simulator
ships them, scripted expert policies and task-aware probe behaviours for the pre-training checks.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.paths import cache_dir
from rewardlab.resources import resource_dir
from rewardlab.sims.registry import SIMULATORS

#: A behaviour for checks and probes: ``(observation, step t) -> action``.
Policy = Callable[[np.ndarray, int], np.ndarray]


class Simulator:
    """One simulator family's adapter; subclass it and register it (:mod:`rewardlab.sims.registry`).

    :cvar packages: distributions whose versions key cached card checks (a new version re-checks)
    """

    name: str = ""
    packages: tuple[str, ...] = ("gymnasium",)

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        """A gymnasium env for the card, seeded, whose episodes last ``card.episode_steps`` steps unless
        the task ends them earlier."""
        raise NotImplementedError

    def presets(self) -> dict[str, Any]:
        """Algorithm presets for this simulator's tasks (rl-zoo3 style: per algorithm a ``default``
        block and per-env-id overrides); built-in simulators read ``agents/<name>.yaml``."""
        path = resource_dir("agents") / f"{self.name}.yaml"
        if not path.is_file():
            return {}
        return yaml.safe_load(path.read_text()) or {}

    def known_env_ids(self) -> list[str]:
        """The simulator's env ids, for "did you mean" when a card names an unknown one."""
        return []

    def episode_limit(self, env: gym.Env) -> int | None:
        """The step count after which the env ends episodes by itself, if it has one besides the
        gymnasium ``TimeLimit`` (a card longer than it would be cut short)."""
        return None

    def expert(self, card: EnvCard) -> Policy | None:
        """A scripted expert for the task, its actions unclipped (``None``: the simulator ships none)."""
        return None

    def capabilities(self, card: EnvCard) -> set[str]:
        """What the task provides to shapers (:data:`rewardlab.shaping.base.CAPABILITIES`):
        ``expert_policy`` when the simulator ships a scripted expert for it."""
        return {"expert_policy"} if self.expert(card) is not None else set()

    def probe_policies(self, card: EnvCard, expert: Policy, rng: np.random.Generator) -> list[tuple[str, Policy]]:
        """Task-aware behaviours that should *not* score like the expert (reward-hacking probes,
        e.g. reach the object, then hover); empty when the adapter knows none."""
        return []

    def versions(self) -> dict[str, str]:
        found = {}
        for package in self.packages:
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                found[package] = "?"
        return found


def get_simulator(name: str) -> Simulator:
    """The adapter registered as ``name`` (:data:`rewardlab.sims.registry.SIMULATORS`), imported on
    first use.

    :raises UserError: unknown name, or its package is not installed
    """
    adapter = SIMULATORS.get(name)
    assert isinstance(adapter, Simulator), f"simulator {name!r} is registered as a {type(adapter).__name__}"
    return adapter


def make_env(card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
    """Create the env a card describes, seeded, with its episode length set to ``card.episode_steps``.

    :param card: the env card
    :param seed: seed for the env's task sampling and its action space
    :param render_mode: gymnasium render mode (``rgb_array`` for videos), or None
    :raises UserError: the simulator is not installed, or the card's ``env_id`` is unknown to it
    """
    adapter = get_simulator(card.simulator)
    try:
        return adapter.make_env(card, seed=seed, render_mode=render_mode)
    except (gym.error.Error, ValueError, KeyError) as e:
        known = adapter.known_env_ids()
        if known and card.env_id not in known:
            near = difflib.get_close_matches(card.env_id, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"env card {card.label}: env_id {card.env_id!r} is not a {card.simulator} env{hint}") from None
        raise UserError(f"env card {card.label}: {card.simulator} could not make {card.env_id!r}: "
                        f"{' '.join(str(e).split())}") from None


def verify_card(card: EnvCard, use_cache: bool = True) -> None:
    """Check a card against its live env once (spaces, every field's source, the episode length);
    raise :class:`UserError` naming every mismatch and the card's file.

    Commands that use a card (``check``, ``train``, ``run``, ``generate``) call this before doing
    anything else. A passing verdict is cached per card content and simulator version, so the env is
    made once per card per machine, not at every use.
    """
    adapter = get_simulator(card.simulator)
    key_data = {"card": card.model_dump(mode="json"), "sim": card.simulator, "versions": adapter.versions()}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
    marker = cache_dir() / "verified-cards" / f"{key}.ok"
    if use_cache and marker.is_file():
        return
    env = make_env(card, seed=0)
    try:
        card.check_live(env, episode_limit=adapter.episode_limit(env))
    finally:
        env.close()
    if use_cache:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(card.id + "\n")
        except OSError:
            pass  # a cache is an optimisation: a read-only home only costs a re-check
