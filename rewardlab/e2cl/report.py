"""The E2CL table: per held-out split and algorithm, success rate and executability (share of executable
steps) as the mean over seeds with a 95% Student-t confidence interval, plus how often speculative
inference's corrections fired and how often they were right (against the env).

Seeds are the unit: each seed's value is the mean over its evaluation episodes. With n seeds the
interval is mean +- t_{0.975, n-1} * sd / sqrt(n), clipped to [0, 1]; one seed gets no interval.
Written as ``e2cl_report.md`` in the run directory by ``rewardlab e2cl report RUN``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats as st

from rewardlab.e2cl.agents import is_error
from rewardlab.errors import UserError
from rewardlab.runs.report import resolve_run
from rewardlab.store import RunStore, TrialRecord

METRICS = ("success", "executability")
ORDER = ("sft", "sft_feedback", "e2cl")


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over seeds, clipped to [0, 1]; ``(m, nan, nan)`` for one value.

    :raises UserError: no values
    """
    if not values:
        raise UserError("no finished seeds to summarise")
    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(st.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, max(0.0, m - half), min(1.0, m + half)


def _per_seed(trial: TrialRecord, metric: str) -> float | None:
    r = trial.result
    if r is None or not r.eval.episodes:
        return None
    if metric == "success":
        return r.eval.mean("success")
    return float(np.mean([c.get(metric, np.nan) for c in r.eval.components]))


def _corrections(trials: list[TrialRecord]) -> str:
    """Speculative inference's corrections, counted from the trials' ``eval_log.jsonl``: how often they
    fired, how often the proposal was really infeasible, how many the re-check accepted, how many of
    those the env executed, and how many were the proposal itself."""
    n = dict.fromkeys(("steps", "fired", "infeasible", "accepted", "executable", "same"), 0)
    for t in trials:
        log = Path(t.dir or "") / "eval_log.jsonl"
        if not t.dir or not log.is_file():
            return "- (no eval_log.jsonl)"
        for line in log.read_text().splitlines():
            e = json.loads(line)
            n["steps"] += 1
            if e.get("correction") is None:
                continue
            n["fired"] += 1
            n["infeasible"] += str(e.get("proposal_env_feedback", "")).startswith("Error")
            if not is_error(str(e.get("correction_predicted_feedback"))):
                n["accepted"] += 1
                n["executable"] += e.get("env_feedback") == "True"
                n["same"] += e.get("correction") == e.get("proposal")
    if not n["fired"]:
        return "-"
    f, a = n["fired"], n["accepted"]
    head = f"fired {f / n['steps']:.0%} of steps; the proposal was infeasible in {n['infeasible'] / f:.0%}; accepted {a}/{f}"
    if not a:  # no accepted correction: no share of them to give
        return head
    return f"{head}, {n['executable'] / a:.0%} of them executable, {n['same'] / a:.0%} identical to the proposal"


def summary_table(trials: list[TrialRecord]) -> list[str]:
    """Markdown rows: split, algorithm, seeds, success and executability mean [95% CI], per-seed values."""
    groups: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
    for t in trials:
        if t.status == "done":
            groups[(t.task, t.algo)].append(t)
    lines = ["| split (card) | algorithm | seeds | success, mean [95% CI] | executability, mean [95% CI] | "
             "per seed (success / executability) | speculative corrections |", "|---|---|---|---|---|---|---|"]
    for (task, algo) in sorted(groups, key=lambda k: (k[0], ORDER.index(k[1]) if k[1] in ORDER else 99)):
        ts = sorted(groups[(task, algo)], key=lambda t: t.seed)
        cells = []
        for metric in METRICS:
            vals = [v for v in (_per_seed(t, metric) for t in ts) if v is not None]
            m, lo, hi = mean_ci(vals)
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if not np.isnan(lo) else f"{m:.3f}")
        per_seed = ", ".join(f"{_per_seed(t, 'success'):.2f}/{_per_seed(t, 'executability'):.2f}" for t in ts)
        lines.append(f"| {task} | {algo} | {len(ts)} | {cells[0]} | {cells[1]} | {per_seed} | {_corrections(ts)} |")
    return lines


def write_e2cl_report(run: str | Path, out: Path = Path("runs")) -> Path:
    """Write ``e2cl_report.md`` into the run directory and return its path.

    :raises UserError: unknown run, or a run without finished ``e2cl`` trials
    """
    db, run_id = resolve_run(run, out)
    with RunStore(db) as store:
        if store.get_run(run_id) is None:
            raise UserError(f"no run {run_id!r} in {db}")
        trials = [t for t in store.trials(run_id) if t.result is not None and t.result.trainer == "e2cl"]
    if not trials:
        raise UserError(f"run {run_id} has no finished e2cl trials")
    lines = [f"# E2CL: {run_id}", "",
             "Success rate and executability (share of executable steps) on each evaluation split; mean over seeds "
             "(each seed: the mean over its evaluation episodes) with a 95% Student-t interval, clipped to [0, 1]. "
             "Regenerate with `rewardlab e2cl report RUN`.", "", *summary_table(trials), ""]
    path = db.parent / run_id / "e2cl_report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
