"""Reward checks before training: the static policy and a sandbox trial on states sampled from the
env (:func:`check_program`), and CARD's trajectory preference check (:func:`trajectory_preference_check`).

:func:`check_program` is what ``rewardlab check`` and every trainer run first. States come from
random-action rollouts (:func:`rewardlab.rollouts.sample_states`), cached on disk, so a check costs a
sandbox process (a fraction of a second), not an env start; the trial process is started before the
states are sampled, so on a cold cache the two overlap.
"""

from __future__ import annotations

import math
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

__all__ = ["PreferenceReport", "SampledStates", "preference_score", "Trajectory", "check_program", "collect_trajectories",
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


# -- trajectory preference check (CARD's TPE, graded) ------------------------------------------------
@dataclass
class PreferenceReport:
    """What the trajectory preference check found.

    :param rho: Spearman rank correlation between the program's return and task progress over all
        trajectories (in [-1, 1]; NaN when progress or return is constant). Progress is success first
        (where the card has a rule), then the env's own return
    :param rho_graded: the same over the expert's graded trajectories (the expert, its prefixes stopped
        at each stage, its noise levels) and the hacking probes: the fine distinctions near success,
        which random, idle and sine trajectories do not test (NaN without an expert)
    :param accuracy: fraction of ordered pairs (better, worse) the program's return ranks the same way
        (CARD's pairwise form; pairs closer than 10% of the progress range are skipped)
    :param pairs: number of pairs compared
    :param basis: ``success`` (success, then env return) or ``env return``
    :param returns: mean program return per actor label
    :param scales: per component, the mean absolute value per step, its share of all components' magnitude,
        and its share of the expert's return (``expert_share``, signed; NaN without an expert)
    :param warnings: hacking probes and scale problems, in words
    :param dropped_probes: hacking probes left out because they succeed on this task (no probe there)
    """

    rho: float
    rho_graded: float
    accuracy: float
    pairs: int
    basis: str
    returns: dict[str, float]
    scales: dict[str, dict[str, float]]
    warnings: list[str]
    dropped_probes: list[str]

    @property
    def score(self) -> float:
        """What ranks candidates before training: the lower of ``rho`` and ``rho_graded`` (a reward must
        order both the coarse range of behaviour and the stages near success), NaN counted as -1 (a
        program that cannot tell the trajectories apart); ``rho`` alone without an expert."""
        return preference_score(self.rho, self.rho_graded)

    def summary(self) -> str:
        """One line: ``0.86 (rho 0.86, graded 0.90)``; a NaN said in words (no expert to grade, or a
        constant return)."""
        rho = f"{self.rho:.2f}" if not math.isnan(self.rho) else "n/a: the return is constant"
        graded = (f"graded {self.rho_graded:.2f}" if not math.isnan(self.rho_graded)
                  else "no graded expert trajectories on this task")
        return f"{self.score:.2f} (rho {rho}, {graded})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preference_score(rho: float, rho_graded: float) -> float:
    """:attr:`PreferenceReport.score` from its two correlations (for stored reports)."""
    if math.isnan(rho_graded):
        return -1.0 if math.isnan(rho) else rho
    return min(-1.0 if math.isnan(r) else r for r in (rho, rho_graded))


def trajectory_preference_check(program: RewardProgram, card: EnvCard, trajectories: list[Trajectory]) -> PreferenceReport:
    """Score a program on graded, labelled trajectories before any training (after CARD's Trajectory
    Preference Evaluation, graded): does its return rise with task progress (Spearman's rho over expert
    runs, expert prefixes stopped at each stage, noise levels, random, idle and sine), are its
    components on sensible scales, does it pay for doing nothing, and does a hacking probe (reach the
    object, then hover) score like the expert? A probe that succeeds on this task is no probe and is
    left out. Run the sandbox trial first: this evaluates the program in-process.

    :param program: the checked program
    :param card: its task
    :param trajectories: from :func:`rewardlab.rollouts.collect_trajectories`
    """
    dropped = sorted({t.label for t in trajectories if t.probe and t.success})
    trajectories = [t for t in trajectories if not (t.probe and t.success)]
    reward = program.bind(card)
    extractor = StateExtractor(card)
    totals: list[float] = []
    per_step: list[float] = []
    comp_abs: dict[str, list[float]] = {}
    comp_sum: dict[str, list[float]] = {}
    for t in trajectories:
        total, comps = reward(extractor.view(t.states.copy(), t.obs), t.actions)
        totals.append(float(np.sum(total)))
        per_step.append(float(np.mean(total)))
        for name, value in comps.items():
            comp_abs.setdefault(name, []).append(float(np.mean(np.abs(value))))
            comp_sum.setdefault(name, []).append(float(np.sum(value)))

    env = np.array([t.env_return for t in trajectories])
    successes = [t.success for t in trajectories]
    if all(s is not None for s in successes) and len(set(successes)) == 2:
        basis = "success"
        spread = float(env.max() - env.min()) or 1.0
        truth = [float(bool(s)) + 0.5 * (e - env.min()) / spread for s, e in zip(successes, env)]
    else:
        basis, truth = "env return", list(env)
    rho = _spearman(totals, truth)
    graded = [i for i, t in enumerate(trajectories) if t.label.startswith("expert") or t.probe]
    rho_graded = _spearman([totals[i] for i in graded], [truth[i] for i in graded]) if graded else float("nan")
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
    experts = [i for i, t in enumerate(trajectories) if t.label == "expert"]
    expert_total = float(np.mean([totals[i] for i in experts])) if experts else float("nan")
    scales = {}
    for k, m in magnitude.items():
        expert_part = float(np.mean([comp_sum[k][i] for i in experts])) if experts else float("nan")
        share = expert_part / expert_total if experts and expert_total != 0 else float("nan")
        scales[k] = {"mean_abs_per_step": m, "share": m / whole, "expert_share": share}
    for name, sc in scales.items():
        if len(scales) > 1 and sc["share"] > 0.9:
            warnings.append(f"component {name!r} is {sc['share']:.0%} of the reward's magnitude: the others barely matter")
        if sc["mean_abs_per_step"] == 0.0:
            warnings.append(f"component {name!r} is zero on every trajectory")
    best_cut = max(truth) - margin
    better = [p for p, y in zip(per_step, truth) if y >= best_cut]
    idle = [p for p, y, t in zip(per_step, truth, trajectories) if t.label == "idle" and y < best_cut]
    if idle and better and np.mean(better) > 0 and np.mean(idle) >= 0.5 * np.mean(better):
        warnings.append(f"standing still earns {np.mean(idle) / np.mean(better):.0%} of the best trajectories' reward per step")
    for label in sorted({t.label for t in trajectories if t.probe}):
        if experts and returns[label] >= expert_total:
            warnings.append(f"the hacking probe {label!r} (approach, then hover) scores at least the expert's return: "
                            "reward hacking")
    # behaviour unrelated to the task (random, idle, sine) scoring like the best is hacking, not a near tie
    unrelated = [r for r, y, t in zip(totals, truth, trajectories)
                 if y < best_cut and not (t.label.startswith("expert") or t.probe)]
    best_mean = np.mean([r for r, y in zip(totals, truth) if y >= best_cut])
    if unrelated and max(unrelated) >= best_mean:
        warnings.append("random, idle or sine behaviour scores at least as high as the best trajectories on average "
                        "(possible reward hacking)")
    return PreferenceReport(rho, rho_graded, agree / pairs if pairs else float("nan"), pairs, basis, returns, scales,
                            warnings, dropped)


def _spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho (scipy), NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)
