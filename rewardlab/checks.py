"""Reward checks before training: the static policy and a sandbox trial on states sampled from the
env (:func:`check_program`), and CARD's trajectory preference check (:func:`trajectory_preference_check`).

:func:`check_program` is what ``rewardlab check`` and every trainer run first. States come from
random-action rollouts (:func:`rewardlab.rollouts.sample_states`), cached on disk, so a check costs a
sandbox process (a fraction of a second), not an env start; the trial process is started before the
states are sampled, so on a cold cache the two overlap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.errors import RewardProgramError
from rewardlab.program import RewardProgram, load_program
from rewardlab.rollouts import SampledStates, Trajectory, collect_trajectories, sample_states
from rewardlab.state import StateExtractor
from rewardlab.trial import TrialLimits, TrialReport, start_trial

__all__ = ["PreferenceReport", "SampledStates", "Trajectory", "check_program", "collect_trajectories",
           "sample_states", "trajectory_preference_check"]


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
    :param n_states: sampled states to evaluate it on (at least 1)
    :param seed: rollout seed of the sampled states
    :param limits: the trial's CPU, memory and wall-clock limits
    :raises ValueError: ``n_states`` below 1
    """
    if n_states < 1:
        raise ValueError(f"n_states must be at least 1, got {n_states}")
    try:
        if not isinstance(program, RewardProgram):
            program = load_program(program)
    except RewardProgramError as e:
        return TrialReport(False, rule=e.rule, message=e.message, line=e.line)
    pending = start_trial(limits)  # its interpreter starts while the states are sampled
    try:
        sampled = sample_states(card, n_states, seed)
    except BaseException:
        pending.cancel()
        raise
    return pending.run(program.source, card.model_dump_json(), sampled.states, sampled.actions, sampled.obs)


# -- trajectory preference check (CARD's TPE) --------------------------------------------------------
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
        basis, truth = "success", [float(bool(s)) for s in successes]
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
