"""The run report: per task, a table of reward source × algorithm (the IQM over seeds of the final
evaluation, with its 95% stratified-bootstrap confidence interval: :mod:`rewardlab.stats`) and a
learning-curve plot, written as ``<run dir>/report.md`` with PNGs beside it.

Everything comes from the run store, so a report can be regenerated at any time with
``rewardlab report RUN``, including for a run that is still going or was interrupted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from rewardlab.errors import UserError
from rewardlab.paths import relative_path, safe_name
from rewardlab.stats import SUCCESS_BOUNDS, CurveEstimate, iqm_ci, iqm_ci_pointwise
from rewardlab.store import DB_NAME, RunRecord, RunStore, TrialRecord, holder_alive

#: The range of each metric that has one: intervals and bands are clipped to it.
BOUNDS: dict[str, tuple[float, float]] = {"success": SUCCESS_BOUNDS}


def resolve_run(run: str | Path, out: Path = Path("runs")) -> tuple[Path, str]:
    """Find a run's store and id from a run directory or a run id.

    :param run: a run directory (``runs/quickstart-20250101-120000``) or a run id
    :param out: the folder holding ``rewardlab.sqlite`` and the run directories (for a run id)
    :return: ``(database path, run id)``
    """
    path = Path(run)
    if (path.is_dir() or len(path.parts) > 1) and (path.parent / DB_NAME).is_file():
        return path.parent / DB_NAME, path.name
    db = Path(out) / DB_NAME
    if not db.is_file():
        raise UserError(f"no run store at {db}; pass --out to the folder that `rewardlab run` wrote to")
    return db, str(run)


def write_report(run: str | Path, out: Path = Path("runs")) -> Path:
    """Write ``report.md`` and ``curves_<task>.png`` into a run's directory; return the report's path.

    :param run: a run directory or a run id
    :param out: the folder holding ``rewardlab.sqlite`` (used when ``run`` is an id)
    """
    db, run_id = resolve_run(run, out)
    with RunStore(db) as store:
        record = store.get_run(run_id)
        if record is None:
            known = ", ".join(r.id for r in store.list_runs()[:5]) or "none"
            raise UserError(f"no run {run_id!r} in {db} (recent runs: {known})")
        if record.spec_name in ("generate", "randomize"):  # no trials: an empty "0 done" report would say nothing
            what = "a generation" if record.spec_name == "generate" else "a domain randomisation proposal"
            raise UserError(f"run {run_id} is {what}, not an experiment: it has no trials to report; see it with "
                            f"`rewardlab review {run_id}`" + (" or `rewardlab lineage`" if record.spec_name == "generate"
                                                                else ""))
        trials = store.trials(run_id)
        done = [t for t in trials if t.status == "done"]
        panels = {metric: {t.id: _curve(store, t, metric) for t in done} for metric in PANELS}
    run_dir = db.parent / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    lines = _header(record, trials, db.parent)
    by_task: dict[str, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_task[t.task].append(t)
    from rewardlab.moe.summary import routing_section  # MoE policies: router diagnostics
    from rewardlab.runs.thesis import thesis_section

    for task, task_trials in by_task.items():
        lines += [f"## {task}", ""]
        lines += _table(task_trials)
        png = _plot_curves(task, task_trials, panels, run_dir / f"curves_{safe_name(task)}.png")
        if png is not None:
            lines += ["", f"![learning curves for {task}]({png.name})"]
        lines.append("")
        lines += thesis_section(task, task_trials, run_dir)  # tabular learners: the thesis' log2 plot and table
    lines += routing_section([(t.key, t.dir) for t in done])
    lines += _failures(trials)

    report = run_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


# -- pieces of the report ------------------------------------------------------------------------
def _header(run: RunRecord, trials: list[TrialRecord], out: Path) -> list[str]:
    """The title, the run's state, how to regenerate the report (``out`` relative to the working
    directory, so the line works where it is read) and what the statistic is."""
    counts = {s: sum(t.status == s for t in trials) for s in ("done", "failed", "pending", "running")}
    unfinished = counts["pending"] + counts["running"]
    description = _spec_description(run.spec_yaml)
    lines = [f"# {run.id}", ""]
    if description:
        lines += [description, ""]
    live = run.status == "running" and run.holder_pid is not None and holder_alive(run)
    if live:  # a snapshot of a run that is still going: resuming it now would be refused
        state = f"still running (process {run.holder_pid} on {run.holder_host}); this report is a snapshot"
    elif unfinished:
        state = f"not finished (continue it with `rewardlab run SPEC --out {relative_path(out)} --resume {run.id}`)"
    else:
        state = ""
    status = "running" if live else ("interrupted" if run.status == "running" else run.status)
    lines += [
        f"- spec: `{run.spec_name}`, created {run.created[:19].replace('T', ' ')} UTC, status {status}"
        + (f" ({run.reason})" if run.reason and not live else ""),
        f"- trials: {counts['done']} done, {counts['failed']} failed"
        + (f", {unfinished} {state}" if unfinished else (f"; {state}" if state else "")),
        f"- regenerate this report: `rewardlab report {run.id} --out {relative_path(out)}`",
        "",
        "Each cell summarises the final deterministic evaluation (mean over its episodes) of every seed: "
        "the IQM over seeds with a 95% stratified-bootstrap confidence interval (rliable), written "
        f"`IQM [low, high] (IQM, n=seeds)`; {_seed_counts(trials)} per cell. The IQM is the mean of the middle "
        "50% of seeds (with fewer than 4 seeds, the mean); with few seeds the interval is wide, and with "
        "one seed there is none (`n=1, no interval`). *env return* is the env's own reward; *program "
        "return* is the reward program trained on; *success* is the fraction of evaluation episodes that "
        "met the card's success rule (its interval stays within [0, 1]).",
        "",
    ]
    return lines


def _seed_counts(trials: list[TrialRecord]) -> str:
    """How many finished seeds the cells rest on: ``2 seeds``, ``1 to 3 seeds``."""
    done: dict[tuple[str, str, str], int] = defaultdict(int)
    for t in trials:
        done[(t.task, t.reward, t.algo)] += t.status == "done"
    counts = sorted(set(done.values()) - {0})
    if not counts:
        return "no finished seeds"
    low, high = counts[0], counts[-1]
    return f"{low} seed{'s' * (low != 1)}" if low == high else f"{low} to {high} seeds"


def _spec_description(spec_yaml: str) -> str:
    import yaml

    try:
        data = yaml.safe_load(spec_yaml)
    except yaml.YAMLError:
        return ""
    text = data.get("description") if isinstance(data, dict) else None
    return " ".join(str(text).split()) if text else ""


_NAMES = {"return_env": "env_return", "return_program": "program_return"}


def _final(trial: TrialRecord, name: str) -> float | None:
    """The final evaluation's mean of ``env_return``, ``program_return`` or ``success`` (None when it
    does not apply: the env's own reward has no program return)."""
    return trial.result.final(_NAMES.get(name, name)) if trial.result is not None else None


def _cell(values: list[float | None], metric: str, digits: int = 2) -> str:
    """IQM and interval of the seeds' values that exist (``—`` when none does)."""
    return iqm_ci([v for v in values if v is not None], bounds=BOUNDS.get(metric)).format(digits)


def _groups(trials: list[TrialRecord]) -> dict[tuple[str, str], list[TrialRecord]]:
    """Trials by (reward, algo), in the order they were added to the run."""
    groups: dict[tuple[str, str], list[TrialRecord]] = {}
    for t in trials:
        groups.setdefault((t.reward, t.algo), []).append(t)
    return groups


def _table(trials: list[TrialRecord]) -> list[str]:
    done = [t for t in trials if t.status == "done"]
    if not done:
        return ["No finished trials yet."]
    show_program = any(_final(t, "return_program") is not None for t in done)
    show_success = any(_final(t, "success") is not None for t in done)
    header = ["reward", "algo", "seeds", "env return"]
    header += ["program return"] * show_program + ["success"] * show_success + ["steps", "wall s (mean)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (reward, algo), group in _groups(trials).items():
        finished = [t for t in group if t.status == "done"]
        seeds = f"{len(finished)}" + (f" of {len(group)}" if len(finished) != len(group) else "")
        row = [reward, algo, seeds]
        for metric, shown in (("return_env", True), ("return_program", show_program), ("success", show_success)):
            if shown:
                row.append(_cell([_final(t, metric) for t in finished], metric))
        # steps trained: the budget rounded up to whole rollouts, so seeds can differ slightly
        steps = sorted({t.result.steps for t in finished if t.result is not None})
        row.append("—" if not steps else str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}")
        walls = [t.result.wall_s for t in finished if t.result is not None]
        row.append(f"{np.mean(walls):.0f}" if walls else "—")
        lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    return lines


def _failures(trials: list[TrialRecord]) -> list[str]:
    failed = [t for t in trials if t.status == "failed"]
    if not failed:
        return []
    lines = ["## Failed trials", "", "| trial | error |", "|---|---|"]
    lines += [f"| {_md(t.key)} | {_md(t.error or 'unknown error')} |" for t in failed]
    return lines + [""]


def _md(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


# -- learning curves -----------------------------------------------------------------------------
#: What the learning-curve panels show (a panel is drawn when some trial has the metric).
PANELS = {"return_env": "env return (deterministic evaluation)", "success": "success rate (deterministic evaluation)"}


def _curve(store: RunStore, trial: TrialRecord, metric: str = "return_env") -> tuple[np.ndarray, np.ndarray] | None:
    """A done trial's (steps, metric) curve: from the metrics table, else from its result (finite
    values only: a diverged evaluation leaves a gap, not a band to infinity)."""
    points = [(s, v) for s, _, v in store.metrics(trial.id, metric) if v is not None and math.isfinite(v)]
    if not points:
        points = [(p.step, v) for p in (trial.result.curve if trial.result else [])
                  if (v := getattr(p, metric, None)) is not None and math.isfinite(v)]
    if not points:
        return None
    steps, values = zip(*sorted(points), strict=True)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _align(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put several seeds' curves on one step grid: their shared steps, or else interpolate over the
    steps all of them cover."""
    shared = set(curves[0][0].tolist())
    for steps, _ in curves[1:]:
        shared &= set(steps.tolist())
    if len(shared) >= 2 or len(curves) == 1:
        grid = np.asarray(sorted(shared))
    else:
        lo = max(s[0] for s, _ in curves)
        hi = min(s[-1] for s, _ in curves)
        grid = np.unique(np.concatenate([s for s, _ in curves]))
        grid = grid[(grid >= lo) & (grid <= hi)]
    return grid, np.stack([np.interp(grid, s, v) for s, v in curves])


def _plot_curves(
    task: str,
    trials: list[TrialRecord],
    panels: dict[str, dict[int, tuple[np.ndarray, np.ndarray] | None]],
    path: Path,
) -> Path | None:
    """One panel per metric of :data:`PANELS` that some trial has: at each step the IQM over seeds and
    its 95% stratified-bootstrap band (pointwise, as rliable draws sample-efficiency curves), clipped
    to the metric's range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: list[tuple[str, list[tuple[str, np.ndarray, CurveEstimate]]]] = []
    for metric, curves in panels.items():
        series = []
        for (reward, algo), group in _groups(trials).items():
            found = [c for c in (curves.get(t.id) for t in group) if c is not None]
            if not found:
                continue
            grid, stacked = _align(found)
            if grid.size == 0:
                continue
            series.append((f"{reward} / {algo} (n={len(found)})", grid,
                           iqm_ci_pointwise(stacked, bounds=BOUNDS.get(metric))))
        if series:
            drawn.append((PANELS[metric], series))
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(7 * len(drawn), 4.2), squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], drawn, strict=True):
        for label, grid, est in series:
            (line,) = ax.plot(grid, est.point, marker="o" if grid.size < 3 else None, label=label)
            if est.low is not None and est.high is not None:
                ax.fill_between(grid, est.low, est.high, color=line.get_color(), alpha=0.2, linewidth=0)
        if ylabel.startswith("success"):
            ax.set_ylim(-0.05, 1.05)  # a rate: a little margin so 0 and 1 stay visible
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{task}: IQM over seeds, band: 95% stratified-bootstrap CI (rliable)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
