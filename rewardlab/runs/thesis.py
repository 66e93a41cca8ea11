"""The reward-design thesis' comparison, for runs of the ``tabular`` trainer: the learner's value under
the original reward vs episodes on a log₂ axis (as in the papers' figures), mean and 95% confidence
interval over runs, and a table of the first episode at which each run reaches 0.9 of the optimum.

It reads each finished trial's ``curves.npz`` (every evaluation of every run; see
:mod:`rewardlab.training.tabular`), pooling the runs of all seeds of a (reward, algorithm) pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewardlab.paths import safe_name
from rewardlab.store import TrialRecord

#: "first episode at ≥ 0.9 V*" (the research note's column).
THRESHOLD = 0.9


Curves = tuple[np.ndarray, np.ndarray, float, float]


def _load(trial: TrialRecord, run_dir: Path) -> Curves | None:
    if trial.status != "done" or trial.trainer != "tabular" or not trial.dir:
        return None
    # the stored directory, else the same name under this run (a run directory that was moved)
    path = next((p / "curves.npz" for p in (Path(trial.dir), run_dir / "trials" / Path(trial.dir).name)
                 if (p / "curves.npz").is_file()), None)
    if path is None:
        return None
    data = np.load(path)
    optimum = float(data["optimum"])
    target = float(data["target"]) if "target" in data else THRESHOLD * optimum
    return data["episodes"], data["values"].astype(np.float64), optimum, target


def pooled_curves(trials: list[TrialRecord], run_dir: Path) -> dict[tuple[str, str], Curves]:
    """Per (reward, algo): ``(episodes (E,), values (runs over all seeds, E), optimum, target)``."""
    out: dict[tuple[str, str], tuple[np.ndarray, list[np.ndarray], float, float]] = {}
    for t in trials:
        loaded = _load(t, run_dir)
        if loaded is None:
            continue
        episodes, values, optimum, target = loaded
        key = (t.reward, t.algo)
        if key in out and len(out[key][0]) != len(episodes):
            continue  # a resumed run with another budget: keep the first shape
        out.setdefault(key, (episodes, [], optimum, target))[1].append(values)
    return {k: (e, np.concatenate(v), o, g) for k, (e, v, o, g) in out.items()}


def first_reaching(episodes: np.ndarray, values: np.ndarray, target: float) -> np.ndarray:
    """Per run, the first evaluated episode whose value is ≥ ``target`` (−1: never)."""
    hit = values >= target - 1e-9
    return np.where(hit.any(1), episodes[hit.argmax(1)], -1)


def mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs (axis 0) and the half-width of its 95% Student-t interval."""
    from scipy import stats

    n = values.shape[0]
    mean = values.mean(0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.975, n - 1) * values.std(0, ddof=1) / np.sqrt(n)
    return mean, half


def thesis_section(task: str, trials: list[TrialRecord], run_dir: Path) -> list[str]:
    """Markdown lines (and a PNG beside the report) for one task's tabular trials; empty when none."""
    pooled = pooled_curves(trials, run_dir)
    if not pooled:
        return []
    lines = [f"### {task}: learning speed (tabular learners)", "",
             "Value of the learner's policy under the original reward R̄ (exact, from the model), pooled over "
             "runs × seeds. *First ≥ target* is the first evaluated episode at which a run's value reaches the "
             f"target (the spec's `target`, else {THRESHOLD} of the optimal policy's value; `n/m never`: runs that "
             "never did). *Mean at 2^k*: at the last evaluation at or before episode 2^k.", ""]
    marks = [2 ** k for k in (6, 9, 12, 15)]
    header = ["reward", "algo", "runs", "first ≥ target: min–max", "median", "never"]
    last = max(int(e[-1]) for e, _, _, _ in pooled.values())
    shown_marks = [m for m in marks if m <= last]
    header += [f"mean at 2^{int(np.log2(m))}" for m in shown_marks] + ["final mean [95% CI]", "target", "optimum"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (reward, algo), (episodes, values, optimum, target) in pooled.items():
        first = first_reaching(episodes, values, target)
        reached = first[first >= 0]
        span = f"{reached.min()}–{reached.max()}" if reached.size else "—"
        median = f"{np.median(reached):.0f}" if reached.size == len(first) else "—"
        row = [reward, algo, str(len(first)), span, median, f"{int((first < 0).sum())}/{len(first)}"]
        for m in shown_marks:  # the last evaluation at or before 2^k (evaluations may be every 100 episodes)
            i = int(np.searchsorted(episodes, m, side="right")) - 1
            row.append(f"{values[:, i].mean():.2f}" if i >= 0 and m <= episodes[-1] else "—")
        mean, half = mean_ci(values[:, -1:])
        row += [f"{mean[0]:.2f} [{mean[0] - half[0]:.2f}, {mean[0] + half[0]:.2f}]", f"{target:.2f}", f"{optimum:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    png = _plot(task, pooled, run_dir / f"thesis_{safe_name(task)}.png")
    return lines + ["", f"![value vs episodes for {task}]({png.name})", ""]


def _plot(task: str, pooled: dict[tuple[str, str], Curves], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    optimum = target = None
    for (reward, algo), (episodes, values, opt, goal) in pooled.items():
        keep = episodes >= 1  # a log axis has no episode 0 (the untrained learner)
        mean, half = mean_ci(values[:, keep])
        (line,) = ax.plot(episodes[keep], mean, label=f"{reward} / {algo} (runs={values.shape[0]})")
        ax.fill_between(episodes[keep], mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
        optimum, target = opt, goal
    if optimum is not None and target is not None:
        ax.axhline(optimum, color="black", lw=0.8, ls="--", label="optimum")
        ax.axhline(target, color="grey", lw=0.8, ls=":", label="target")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("episodes (log₂)")
    ax.set_ylabel("value of the learner's policy under R̄")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{task}: mean over runs, band: 95% CI", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
