"""Rollouts for checks: sampled states (random actions) and labelled trajectories (expert, perturbed
expert, probes, random, idle, sine), cached on disk per card content so a check costs a sandbox
process, not an env start.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.paths import cache_dir, safe_name
from rewardlab.sims.base import Policy, get_simulator, make_env
from rewardlab.state import StateExtractor, obs_columns


@dataclass
class SampledStates:
    """States from random rollouts: flat states ``(N, D)``, actions ``(N, A)``, observations ``(N, O)``."""

    states: np.ndarray
    actions: np.ndarray
    obs: np.ndarray


def _cache_path(kind: str, card: EnvCard, *parts: Any) -> Path:
    key = hashlib.sha256(card.model_dump_json().encode()).hexdigest()[:16]
    return cache_dir() / kind / "-".join([safe_name(card.id), key, *map(str, parts)])


def _save_atomically(path: Path, arrays: dict[str, Any]) -> None:
    """Write an ``.npz`` so that a concurrent reader never sees half a file; a cache that cannot be
    written (read-only home, full disk) only costs recomputing next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError:
        pass


def sample_states(card: EnvCard, n: int = 256, seed: int = 0, use_cache: bool = True) -> SampledStates:
    """Roll the card's env out with uniformly random actions and record ``n`` post-step states.

    :param card: the env card
    :param n: number of states
    :param seed: env and action-sampling seed
    :param use_cache: reuse states saved for the same card content, ``n`` and ``seed``
    """
    path = _cache_path("states", card, seed, n).with_suffix(".npz")
    if use_cache and path.is_file():
        with np.load(path) as data:
            return SampledStates(data["states"], data["actions"], data["obs"])

    env = make_env(card, seed=seed)
    try:
        sampled = random_rollout(env, StateExtractor(card), n, seed)
    finally:
        env.close()
    if use_cache:
        _save_atomically(path, {"states": sampled.states, "actions": sampled.actions, "obs": sampled.obs})
    return sampled


def random_rollout(env: Any, extractor: StateExtractor, n: int, seed: int) -> SampledStates:
    """What :func:`sample_states` records, on an env made from the card with ``seed``: reset it with
    ``seed``, step it with uniformly random actions (its action space seeded with ``seed``), resetting
    at episode ends, and keep the ``n`` post-step states."""
    env.action_space.seed(seed)
    states: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    observations: list[np.ndarray] = []
    env.reset(seed=seed)
    while len(states) < n:
        action = env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action)
        sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
        columns = obs_columns(obs)
        states.append(extractor.batch(columns[None], sim)[0])
        actions.append(np.asarray(action, dtype=np.float64))
        observations.append(columns)
        if terminated or truncated:
            env.reset()
    return SampledStates(np.stack(states), np.stack(actions), np.stack(observations))


@dataclass
class Trajectory:
    """One rollout for preference checks: flat states, actions and observations per step.

    :param label: who acted (``expert``, ``expert-stop50`` (the expert for half of the steps it needs to
        succeed, then idle), ``expert+noise0.5``, ``reach-and-halt``, ``random``, ``idle``, ``sine``)
    :param success: whether the card's success rule held (None when the card has no rule)
    :param env_return: the env's own return, the progress signal when there is no success rule
    :param probe: a hacking probe of the simulator's (a behaviour that must not succeed)
    """

    label: str
    states: np.ndarray
    actions: np.ndarray
    obs: np.ndarray
    success: bool | None
    env_return: float
    probe: bool = False


_ACTORS_VERSION = 3  # bump when actors() changes: cached trajectories are keyed by it

#: Where graded expert prefixes stop, as fractions of the steps the expert needs to succeed.
STOP_FRACTIONS = (0.25, 0.5, 0.75)
#: Gaussian action noise (in action units) of the perturbed experts, from barely to badly perturbed.
NOISE_LEVELS = (0.25, 0.5, 1.0, 2.0)


def actors(card: EnvCard, rng: np.random.Generator, expert_steps: int | None = None) -> list[tuple[str, Policy, bool]]:
    """Who acts in the preference check, each kind as often as listed, as ``(label, policy, probe)``.

    With a scripted expert (the simulator's adapter provides it): the expert, graded versions of it
    (prefixes stopped at :data:`STOP_FRACTIONS` of ``expert_steps``, the steps it needs to succeed, then
    idle; and :data:`NOISE_LEVELS` of action noise), and the adapter's hacking probes. For every
    simulator: random actions, idle and a sine sweep.
    """
    space = card.action
    out: list[tuple[str, Policy, bool]] = []
    adapter = get_simulator(card.simulator)
    expert = adapter.expert(card)
    if expert is not None and hasattr(space, "low_high"):
        low, high = space.low_high()

        def noisy(sigma: float) -> Policy:
            return lambda obs, t: np.clip(expert(obs, t) + rng.normal(0, sigma, tuple(space.shape)), low, high)

        def stopped(at: int) -> Policy:
            return lambda obs, t: np.clip(expert(obs, t), low, high) if t < at else space.idle()

        out += [("expert", lambda obs, t: np.clip(expert(obs, t), low, high), False)] * 2
        if expert_steps:
            out += [(f"expert-stop{round(100 * f)}", stopped(max(1, round(f * expert_steps))), False)
                    for f in STOP_FRACTIONS]
        out += [(f"expert+noise{sigma:g}", noisy(sigma), False) for sigma in NOISE_LEVELS]
        for label, probe in adapter.probe_policies(card, expert, rng):
            out += [(label, probe, True)] * 2
    out += [("random", lambda obs, t: np.asarray(space.sample(rng), dtype=np.float64), False)] * 3
    out += [("idle", lambda obs, t: space.idle(), False)]
    if hasattr(space, "low_high"):
        low, high = space.low_high()
        phase = rng.uniform(0, 2 * np.pi, tuple(space.shape))
        out += [("sine", lambda obs, t: low + (high - low) * (0.5 + 0.5 * np.sin(0.3 * t + phase)), False)] * 2
    return out


def _rollout(card: EnvCard, extractor: StateExtractor, label: str, act: Policy, seed: int, horizon: int,
             probe: bool = False) -> tuple[Trajectory, int | None]:
    """One labelled trajectory, and the step at which the card's ``info`` success first held (if it did)."""
    rule = card.success_rule
    env = make_env(card, seed=seed)
    obs, _ = env.reset(seed=seed)
    states, actions, observations, env_return, first_hit, terminated = [], [], [], 0.0, None, False
    info: dict[str, Any] = {}
    for t in range(min(horizon, card.episode_steps)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MetaWorld experts warn that the env clips their actions
            action = np.asarray(act(obs, t), dtype=np.float64)
        obs, r, terminated, truncated, info = env.step(action.astype(env.action_space.dtype or np.float32))
        sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
        states.append(extractor.batch(obs_columns(obs)[None], sim)[0])
        actions.append(action)
        observations.append(obs_columns(obs))
        env_return += float(r)
        if rule is not None and rule.kind == "info" and info.get(rule.key) and first_hit is None:
            first_hit = t + 1
        if terminated or truncated:
            break
    env.close()
    success: bool | None = None
    if rule is not None:
        final = None
        if rule.kind == "threshold":
            lo, hi = extractor.offsets[rule.key]
            final = states[-1][lo:hi]
        success = rule.holds(info_hit=first_hit is not None, terminated=bool(terminated), final=final)
    trajectory = Trajectory(label, np.stack(states), np.stack(actions), np.stack(observations), success, env_return,
                            probe)
    return trajectory, first_hit


def collect_trajectories(card: EnvCard, horizon: int = 150, seed: int = 0, use_cache: bool = True) -> list[Trajectory]:
    """Roll out :func:`actors` on the card's env, the same goal sequence for each kind, and record
    full flat states. The expert goes first: the steps it needs to succeed set where the graded
    prefixes stop. Cached on disk like :func:`sample_states`."""
    path = _cache_path("trajectories", card, seed, horizon, f"v{_ACTORS_VERSION}").with_suffix(".npz")
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return [Trajectory(m["label"], data[f"s{i}"], data[f"a{i}"], data[f"o{i}"], m["success"], m["env_return"],
                               m["probe"]) for i, m in enumerate(meta)]

    extractor = StateExtractor(card)
    expert_steps = None
    first = actors(card, np.random.default_rng(seed))
    if first and first[0][0] == "expert":
        _, expert_steps = _rollout(card, extractor, "expert", first[0][1], seed, horizon)
    rng = np.random.default_rng(seed)
    trajectories: list[Trajectory] = []
    seen: dict[str, int] = {}
    for label, act, probe in actors(card, rng, expert_steps):
        k = seen.get(label, 0)
        seen[label] = k + 1
        # the k-th trajectory of every kind meets the same goal
        trajectories.append(_rollout(card, extractor, label, act, seed + k, horizon, probe)[0])
    if use_cache:
        meta = [{"label": t.label, "success": t.success, "env_return": t.env_return, "probe": t.probe}
                for t in trajectories]
        arrays: dict[str, Any] = {"meta": json.dumps(meta)}
        for i, trajectory in enumerate(trajectories):
            arrays[f"s{i}"], arrays[f"a{i}"], arrays[f"o{i}"] = trajectory.states, trajectory.actions, trajectory.obs
        _save_atomically(path, arrays)
    return trajectories
