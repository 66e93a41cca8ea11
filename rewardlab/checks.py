"""Reward checks before training: static policy + sandbox trial on states sampled from the env.

:func:`check_program` is what ``rewardlab check`` and :func:`rewardlab.training.train` run. States
come from random-action rollouts of the card's env (:func:`sample_states`) and are cached on disk, so a
check costs a sandbox process (a fraction of a second), not an env start.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from typing import Any
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


# -- trajectory preference check (CARD's TPE) --------------------------------------------------------
@dataclass
class Trajectory:
    """One rollout for preference checks: flat states, actions and observations per step.

    :param label: who acted (``expert``, ``expert+noise0.3``, ``random``, ``idle``, ``sine``)
    :param success: whether the card's success rule held (None when the card has no rule)
    :param env_return: the env's own return, the progress signal when there is no success rule
    """

    label: str
    states: np.ndarray
    actions: np.ndarray
    obs: np.ndarray
    success: bool | None
    env_return: float


_ACTORS_VERSION = 2  # bump when _policies changes: cached trajectories are keyed by it


def _policies(card: EnvCard, rng: np.random.Generator) -> list[tuple[str, Any]]:
    """Who acts: the scripted expert (MetaWorld) with and without action noise, random, idle, a sine."""
    low = np.broadcast_to(np.asarray(card.action.low, float), card.action.shape)
    high = np.broadcast_to(np.asarray(card.action.high, float), card.action.shape)
    actors: list[tuple[str, Any]] = []
    if card.simulator == "metaworld":
        from metaworld.policies import ENV_POLICY_MAP

        expert = ENV_POLICY_MAP[card.env_id]()

        def noisy(sigma: float) -> Any:
            return lambda obs, t: np.clip(expert.get_action(obs) + rng.normal(0, sigma, card.action.shape), low, high)

        def halting(obs: np.ndarray, t: int) -> np.ndarray:
            # the hacking probe: reach the object like the expert, then hover there doing nothing
            near = np.linalg.norm(obs[0:3] - obs[4:7]) < 0.05
            return np.zeros(card.action.shape) if near else np.clip(expert.get_action(obs), low, high)

        actors += [("expert", lambda obs, t: np.clip(expert.get_action(obs), low, high))] * 2
        actors += [("expert+noise0.5", noisy(0.5))] * 2 + [("expert+noise1.5", noisy(1.5))] * 2
        actors += [("reach-and-halt", halting)] * 2
    phase = rng.uniform(0, 2 * np.pi, card.action.shape)
    actors += [("random", lambda obs, t: rng.uniform(low, high))] * 3
    actors += [("idle", lambda obs, t: np.clip(np.zeros(card.action.shape), low, high))]
    actors += [("sine", lambda obs, t: low + (high - low) * (0.5 + 0.5 * np.sin(0.3 * t + phase)))] * 2
    return actors


def collect_trajectories(card: EnvCard, horizon: int = 150, seed: int = 0, use_cache: bool = True) -> list[Trajectory]:
    """Roll out the actors of :func:`_policies` on the card's env, the same goal sequence for each
    kind, and record full flat states. Cached on disk like :func:`sample_states`."""
    import json as _json
    import warnings

    key = hashlib.sha256(card.model_dump_json().encode()).hexdigest()[:16]
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', card.id)}-{key}-{seed}-{horizon}-v{_ACTORS_VERSION}.npz"
    path = cache_dir() / "trajectories" / name
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            meta = _json.loads(str(data["meta"]))
            return [Trajectory(m["label"], data[f"s{i}"], data[f"a{i}"], data[f"o{i}"], m["success"], m["env_return"])
                    for i, m in enumerate(meta)]

    from rewardlab.cards import parse_success
    from rewardlab.sims import make_env

    rng = np.random.default_rng(seed)
    extractor = StateExtractor(card)
    rule = parse_success(card.success) if card.success else None
    trajectories: list[Trajectory] = []
    seen: dict[str, int] = {}
    for label, act in _policies(card, rng):
        k = seen.get(label, 0)
        seen[label] = k + 1
        env = make_env(card, seed=seed + k)  # the k-th trajectory of every kind meets the same goal
        obs, _ = env.reset(seed=seed + k)
        states, actions, observations, env_return, hit = [], [], [], 0.0, False
        for t in range(min(horizon, card.episode_steps)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MetaWorld experts warn that the env clips their actions
                action = np.asarray(act(obs, t), dtype=np.float64)
            obs, r, terminated, truncated, info = env.step(action.astype(np.float32))
            sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
            states.append(extractor.batch(np.asarray(obs)[None], sim)[0])
            actions.append(action)
            observations.append(np.asarray(obs, dtype=np.float64))
            env_return += float(r)
            if rule is not None and rule.kind == "info" and info.get(rule.key):
                hit = True
            if terminated or truncated:
                break
        env.close()
        success: bool | None = None
        if rule is not None:
            if rule.kind == "info":
                success = hit
            elif rule.kind == "survived":
                success = len(states) >= min(horizon, card.episode_steps)
            else:
                lo, hi = extractor.offsets[rule.key]
                value = float(states[-1][lo])
                success = value < rule.value if rule.op == "<" else value > rule.value
        trajectories.append(Trajectory(label, np.stack(states), np.stack(actions), np.stack(observations), success, env_return))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"meta": _json.dumps([{"label": t.label, "success": t.success, "env_return": t.env_return}
                                                       for t in trajectories])}
        for i, t in enumerate(trajectories):
            arrays[f"s{i}"], arrays[f"a{i}"], arrays[f"o{i}"] = t.states, t.actions, t.obs
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return trajectories


@dataclass
class PreferenceReport:
    """What the trajectory preference check found.

    :param accuracy: fraction of ordered pairs (better, worse) that the program's return ranks the same
        way; ground truth is success where the card has a rule and both outcomes occur, else the env's
        own return (pairs closer than 10% of its range are skipped)
    :param pairs: number of pairs compared
    :param returns: mean program return per actor label
    :param scales: per component, the mean absolute value per step and its share of all components
    :param warnings: hacking probes and scale problems, in words
    """

    accuracy: float
    pairs: int
    basis: str
    returns: dict[str, float]
    scales: dict[str, dict[str, float]]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trajectory_preference_check(program: RewardProgram, card: EnvCard, trajectories: list[Trajectory]) -> PreferenceReport:
    """Score a program on labelled trajectories before any training (after CARD's Trajectory Preference
    Evaluation): does it rank better behaviour above worse, are its components on sensible scales, and
    does it pay for doing nothing? Run the sandbox trial first: this evaluates the program in-process.
    """
    reward = program.bind(card)
    extractor = StateExtractor(card)
    totals: list[float] = []
    per_step: list[float] = []
    comp_abs: dict[str, list[float]] = {}
    for t in trajectories:
        total, comps = reward(extractor.view(t.states.copy(), t.obs), t.actions)
        totals.append(float(np.sum(total)))
        per_step.append(float(np.mean(total)))
        for name, value in comps.items():
            comp_abs.setdefault(name, []).append(float(np.mean(np.abs(value))))

    successes = [t.success for t in trajectories]
    if all(s is not None for s in successes) and len(set(successes)) == 2:
        basis, truth = "success", [float(s) for s in successes]
        margin = 0.5
    else:
        basis, truth = "env return", [t.env_return for t in trajectories]
        margin = 0.1 * (max(truth) - min(truth) or 1.0)
    agree = pairs = 0
    for i in range(len(trajectories)):
        for j in range(len(trajectories)):
            if truth[i] - truth[j] > margin:
                pairs += 1
                agree += totals[i] > totals[j]
    labels = sorted({t.label for t in trajectories})
    returns = {lab: float(np.mean([r for r, t in zip(totals, trajectories) if t.label == lab])) for lab in labels}

    warnings: list[str] = []
    magnitude = {k: float(np.mean(v)) for k, v in comp_abs.items()}
    whole = sum(magnitude.values()) or 1.0
    scales = {k: {"mean_abs_per_step": m, "share": m / whole} for k, m in magnitude.items()}
    for name, s in scales.items():
        if len(scales) > 1 and s["share"] > 0.9:
            warnings.append(f"component {name!r} is {s['share']:.0%} of the reward's magnitude: the others barely matter")
        if s["mean_abs_per_step"] == 0.0:
            warnings.append(f"component {name!r} is zero on every trajectory")
    better = [p for p, y in zip(per_step, truth) if y >= max(truth) - margin]
    idle = [p for p, y, t in zip(per_step, truth, trajectories) if t.label == "idle" and y < max(truth) - margin]
    if idle and better and np.mean(better) > 0 and np.mean(idle) >= 0.5 * np.mean(better):
        warnings.append(f"standing still earns {np.mean(idle) / np.mean(better):.0%} of the best trajectories' reward per step")
    worse_best = max((r for r, y in zip(totals, truth) if y < max(truth) - margin), default=None)
    best_mean = np.mean([r for r, y in zip(totals, truth) if y >= max(truth) - margin])
    if worse_best is not None and worse_best >= best_mean:
        warnings.append("a worse trajectory scores at least as high as the best ones on average (possible reward hacking)")
    return PreferenceReport(agree / pairs if pairs else float("nan"), pairs, basis, returns, scales, warnings)
