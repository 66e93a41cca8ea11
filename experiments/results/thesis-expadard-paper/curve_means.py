"""The README's per-reward columns from a run directory's ``curves.npz`` files (not committed: 5 trials of
10 runs × 501 evaluations; the run writes them under ``<run>/trials/<trial>/curves.npz``).

    .venv/bin/python experiments/results/thesis-expadard-paper/curve_means.py runs/thesis-expadard-paper-<stamp> \\
        [1000 2000 5000 10000]

Prints, per reward (runs of all seeds pooled, as the report does): the first evaluated episode at which a run's
value reaches the target (min–max, median), the mean value over runs at the last evaluation at or before each
given episode, and the final mean. Works for any run of the ``tabular`` trainer (e.g. ``thesis-expadard-pool-paper``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(run_dir: Path, marks: list[int]) -> None:
    pooled: dict[str, tuple[np.ndarray, list[np.ndarray], float]] = {}
    for path in sorted(run_dir.glob("trials/*/curves.npz")):
        reward = path.parent.name.split("__")[1]  # <task>__<reward>__<algo>__s<seed>
        data = np.load(path)
        episodes, values = data["episodes"], data["values"].astype(np.float64)
        target = float(data["target"]) if "target" in data else 0.9 * float(data["optimum"])
        pooled.setdefault(reward, (episodes, [], target))[1].append(values)
    if not pooled:
        raise SystemExit(f"no trials/*/curves.npz under {run_dir}")
    print(f"{'reward':20s} {'first >= target: min-max':>26s} {'median':>7s}  "
          + " / ".join(f"{m:,}" for m in marks) + "  final")
    for reward, (episodes, parts, target) in pooled.items():
        values = np.concatenate(parts)
        hit = values >= target - 1e-9
        first = episodes[hit[hit.any(1)].argmax(1)]
        span = f"{first.min():,}–{first.max():,}" if len(first) else "never"
        never = f" ({len(values) - len(first)} never)" if 0 < len(first) < len(values) else ""
        median = f"{int(np.median(first)):,}" if len(first) else "—"
        at = [values[:, np.flatnonzero(episodes <= m)[-1]].mean() for m in marks]
        print(f"{reward:20s} {span + never:>26s} {median:>7s}  " + " / ".join(f"{v:.2f}" for v in at)
              + f"  {values[:, -1].mean():.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: curve_means.py RUN_DIR [EPISODES ...]")
    main(Path(sys.argv[1]), [int(a) for a in sys.argv[2:]] or [1000, 2000, 5000, 10000])
