"""The run report: per task, a table of reward source × algorithm (mean and 95% CI over seeds of the
final evaluation) and a learning-curve plot, written as ``<run dir>/report.md`` with PNGs beside it.

Everything comes from the run store, so a report can be regenerated at any time with
``rewardlab report RUN``, including for a run that is still going or was interrupted.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import UserError
from rewardlab.paths import safe_name
from rewardlab.store import DB_NAME, RunRecord, RunStore, TrialRecord
from rewardlab.stats import MeanCI, mean_ci, mean_ci_curves



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
        trials = store.trials(run_id)
        done = [t for t in trials if t.status == "done"]
        panels = {metric: {t.id: _curve(store, t, metric) for t in done} for metric in PANELS}
    run_dir = db.parent / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    lines = _header(record, trials, db.parent)
    by_task: dict[str, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_task[t.task].append(t)
    for task, task_trials in by_task.items():
        lines += [f"## {task}", ""]
        lines += _table(task_trials)
        png = _plot_curves(task, task_trials, panels, run_dir / f"curves_{safe_name(task)}.png")
        if png is not None:
            lines += ["", f"![learning curves for {task}]({png.name})"]
        lines.append("")
    lines += _failures(trials)

    report = run_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


# -- pieces of the report ------------------------------------------------------------------------
def _header(run: RunRecord, trials: list[TrialRecord], out: Path) -> list[str]:
    counts = {s: sum(t.status == s for t in trials) for s in ("done", "failed", "pending", "running")}
    unfinished = counts["pending"] + counts["running"]
    description = _spec_description(run.spec_yaml)
    lines = [f"# {run.id}", ""]
    if description:
        lines += [description, ""]
    lines += [
        f"- spec: `{run.spec_name}`, created {run.created[:19].replace('T', ' ')} UTC, status {run.status}",
        f"- trials: {counts['done']} done, {counts['failed']} failed"
        + (f", {unfinished} not finished (resume with `rewardlab run SPEC --resume`)" if unfinished else ""),
        f"- regenerate this report: `rewardlab report {run.id} --out {out}`",
        "",
        "Each cell is the final deterministic evaluation (mean over its episodes) averaged over seeds, "
        "± the half-width of the 95% confidence interval (Student's t). With one seed there is no "
        "interval (`n=1, no CI`). *env return* is the env's own reward; *program return* is the reward "
        "program trained on; *success* is the fraction of evaluation episodes that met the card's "
        "success rule.",
        "",
    ]
    return lines


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


def _cell(values: list[float | None], digits: int = 2) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    ci: MeanCI = mean_ci(present)
    return ci.format(digits)


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
        row = [reward, algo, seeds, _cell([_final(t, "return_env") for t in finished])]
        if show_program:
            row.append(_cell([_final(t, "return_program") for t in finished]))
        if show_success:
            row.append(_cell([_final(t, "success") for t in finished]))
        steps = [t.result.steps if t.result else None for t in finished]
        steps_present = [s for s in steps if s is not None]
        row.append(str(steps_present[0]) if len(set(steps_present)) == 1 else _cell(steps, 0))
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
    """A done trial's (steps, metric) curve: from the metrics table, else from its result."""
    points = [(s, v) for s, _, v in store.metrics(trial.id, metric) if v is not None]
    if not points:
        points = [(p.step, getattr(p, metric)) for p in (trial.result.curve if trial.result else [])
                  if getattr(p, metric, None) is not None]
    if not points:
        return None
    steps, values = zip(*sorted(points))
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
    """One panel per metric of :data:`PANELS` that some trial has: mean over seeds, 95% CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]]] = []
    for metric, curves in panels.items():
        series = []
        for (reward, algo), group in _groups(trials).items():
            found = [c for c in (curves.get(t.id) for t in group) if c is not None]
            if not found:
                continue
            grid, stacked = _align(found)
            if grid.size == 0:
                continue
            mean, half = mean_ci_curves(stacked)
            series.append((f"{reward} / {algo} (n={len(found)})", grid, mean, half))
        if series:
            drawn.append((PANELS[metric], series))
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(7 * len(drawn), 4.2), squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], drawn):
        for label, grid, mean, half in series:
            (line,) = ax.plot(grid, mean, marker="o" if grid.size < 3 else None, label=label)
            if half is not None:
                ax.fill_between(grid, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
        if ylabel.startswith("success"):
            ax.set_ylim(-0.05, 1.05)  # a rate: the band is clipped to what is possible
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{task}: mean over seeds, band: 95% CI", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
