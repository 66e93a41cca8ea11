"""Reward checks before training: static policy + sandbox trial on states sampled from the env.

:func:`check_program` is what ``rewardlab check`` and :func:`rewardlab.training.train` run. States
come from random-action rollouts of the card's env (:func:`sample_states`) and are cached on disk, so a
check costs a sandbox process (a fraction of a second), not an env start.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.errors import RewardProgramError
from rewardlab.program import RewardProgram, load_program
from rewardlab.sandbox import TrialLimits, TrialReport, run_trial
from rewardlab.state import StateExtractor


@dataclass
class SampledStates:
    """States from random rollouts: flat states ``(N, D)``, actions ``(N, A)``, observations ``(N, O)``."""

    states: np.ndarray
    actions: np.ndarray
    obs: np.ndarray


def cache_dir() -> Path:
    """``$REWARDLAB_CACHE`` or ``~/.cache/rewardlab``."""
    return Path(os.environ.get("REWARDLAB_CACHE", Path.home() / ".cache" / "rewardlab"))


def sample_states(card: EnvCard, n: int = 256, seed: int = 0, use_cache: bool = True) -> SampledStates:
    """Roll the card's env out with uniformly random actions and record ``n`` post-step states.

    :param card: the env card
    :param n: number of states
    :param seed: env and action-sampling seed
    :param use_cache: reuse states saved for the same card content, ``n`` and ``seed``
    """
    key = hashlib.sha256(card.model_dump_json().encode()).hexdigest()[:16]
    path = cache_dir() / "states" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', card.id)}-{key}-{seed}-{n}.npz"
    if use_cache and path.is_file():
        with np.load(path) as data:
            return SampledStates(data["states"], data["actions"], data["obs"])

    from rewardlab.sims import make_env

    extractor = StateExtractor(card)
    env = make_env(card, seed=seed)
    env.action_space.seed(seed)
    states, actions, observations = [], [], []
    env.reset(seed=seed)
    while len(states) < n:
        action = env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action)
        sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
        states.append(extractor.batch(np.asarray(obs)[None], sim)[0])
        actions.append(np.asarray(action, dtype=np.float64))
        observations.append(np.asarray(obs, dtype=np.float64))
        if terminated or truncated:
            env.reset()
    env.close()
    sampled = SampledStates(np.stack(states), np.stack(actions), np.stack(observations))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, states=sampled.states, actions=sampled.actions, obs=sampled.obs)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return sampled


def check_program(
    program: RewardProgram | str | Path,
    card: EnvCard,
    n_states: int = 256,
    seed: int = 0,
    limits: TrialLimits | None = None,
) -> TrialReport:
    """Static check, then a sandbox trial on sampled states. Never raises for a bad program: the
    report says ``ok=False`` with the rule, message and line.

    :param program: a :class:`RewardProgram`, a path or source text
    :param card: the env card the program is for
    :param n_states: sampled states to evaluate it on
    :param seed: rollout seed of the sampled states
    :param limits: the trial's CPU, memory and wall-clock limits
    """
    try:
        if not isinstance(program, RewardProgram):
            program = load_program(program)
    except RewardProgramError as e:
        return TrialReport(False, rule=e.rule, message=e.message, line=e.line)
    sampled = sample_states(card, n_states, seed)
    return run_trial(program.source, card.model_dump_json(), sampled.states, sampled.actions, sampled.obs, limits)
