"""Does the pre-training preference check predict trained success, and at what cost? (issue 7, part 3)

For each task a pool of candidate rewards is built (no LLM needed, every one labelled by how it was made):

- ``reference``: the hand-written reference reward;
- ``drop-<term>``: the reference without one of its terms (a stage missing);
- ``flip-<term>``: the reference with its first term's sign flipped (a deliberately broken shape);
- ``only-<term>``: the reference's last term alone (the success stage only: sparse-like);
- ``reach-only``, ``goal-only``: a single distance (the hand to the object; the object to the goal);
- ``action-penalty``: minus the squared action (pays for doing nothing: broken);
- ``offline-<i>``: the offline provider's candidates (other tasks' references adapted to this one).

Each candidate is scored by the check (:attr:`rewardlab.checks.PreferenceReport.score`) and trained
(SAC by default) in worker processes side by side; its trained score is the final evaluation's success
rate, or its env return on a task where no candidate succeeds. The figures: Spearman's rho between
check and trained score per task and over the whole pool (ranks within each task), and the check's
compute as a fraction of the training it would replace (trajectory collection counted once per task).

    python -m benchmarks.preference_spearman [--tasks ...] [--per-task 9] [--steps 6000] [--algo sac]
        [--workers 2] [--out benchmarks/results_preference.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT_TASKS = ("metaworld/drawer-close-v3", "metaworld/reach-v3", "metaworld/button-press-v3")

REACH_ONLY = """import numpy as np


def compute_dense_reward(self, action):
    d = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)
    return -d, {"reach": -d}
"""
GOAL_ONLY = """import numpy as np


def compute_dense_reward(self, action):
    d = np.linalg.norm(self.obj1.position - self.goal_position, axis=-1)
    return -d, {"goal": -d}
"""
ACTION_PENALTY = """import numpy as np


def compute_dense_reward(self, action):
    effort = -np.sum(action ** 2, axis=-1)
    return effort, {"effort": effort}
"""


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho (NaN when either side is constant or there are fewer than 3 points)."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return float(spearmanr(xs, ys).statistic)


def _variant(reference: str, body: str) -> str:
    """The reference renamed to ``reference_reward`` and a new entry point built on its components."""
    base = re.sub(r"^def compute_dense_reward\(", "def reference_reward(", reference, count=1, flags=re.M)
    return base + "\n\ndef compute_dense_reward(self, action):\n    total, parts = reference_reward(self, action)\n" + body


def candidate_pool(card: Any, per_task: int) -> list[tuple[str, str]]:
    """``(name, source)`` of the candidates for one task, in a fixed order, at most ``per_task``."""
    from rewardlab.checks import sample_states
    from rewardlab.program import reference_program
    from rewardlab.state import StateExtractor
    from rewardlab.text2reward.offline import offline_candidates

    reference = reference_program(card)
    states = sample_states(card, n=8)
    _, parts = reference.bind(card)(StateExtractor(card).view(states.states.copy(), states.obs), states.actions)
    terms = list(parts)
    pool = [("reference", reference.source)]
    for term in terms:
        keep = f"    kept = {{k: v for k, v in parts.items() if k != {term!r}}}\n    return sum(kept.values()), kept\n"
        pool.append((f"drop-{term}", _variant(reference.source, keep)))
    if terms:
        first, last = terms[0], terms[-1]
        flip = f"    parts = dict(parts)\n    parts[{first!r}] = -parts[{first!r}]\n    return sum(parts.values()), parts\n"
        pool.append((f"flip-{first}", _variant(reference.source, flip)))
        pool.append((f"only-{last}", _variant(reference.source, f"    return parts[{last!r}], {{{last!r}: parts[{last!r}]}}\n")))
    pool += [("reach-only", REACH_ONLY), ("goal-only", GOAL_ONLY), ("action-penalty", ACTION_PENALTY)]
    pool += [(f"offline-{i}", a.source) for i, a in enumerate(offline_candidates(card)[:2])]
    return pool[:per_task]


def run(tasks: list[str], per_task: int, steps: int, algo: str, eval_episodes: int, workers: int,
        out_root: Path) -> dict[str, Any]:
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program, collect_trajectories, trajectory_preference_check
    from rewardlab.config import Budget, Evaluation, TrainConfig
    from rewardlab.program import RewardProgram
    from rewardlab.runs.backends.local import LocalBackend
    from rewardlab.sources import InlineSource
    from rewardlab.training.tasks import TrialTask

    per_task_rows: dict[str, list[dict[str, Any]]] = {}
    tasks_to_train: list[TrialTask] = []
    for task in tasks:
        card = load_card(task)
        started = time.perf_counter()
        trajectories = collect_trajectories(card, use_cache=False)
        collect_s = time.perf_counter() - started
        rows = []
        for i, (name, source) in enumerate(candidate_pool(card, per_task)):
            trial = check_program(source, card)
            if not trial.ok:
                raise RuntimeError(f"{task} {name}: the candidate fails the sandbox trial: {trial.message}")
            started = time.perf_counter()
            report = trajectory_preference_check(RewardProgram(source), card, trajectories)
            check_s = time.perf_counter() - started + trial.seconds
            rows.append({"name": name, "check": report.score, "rho": report.rho, "rho_graded": report.rho_graded,
                         "warnings": report.warnings, "check_s": check_s, "collect_s": collect_s / per_task})
            trial_dir = out_root / f"{card.task}-{i}"
            trial_dir.mkdir(parents=True)
            config = TrainConfig(algo=algo, seed=0, budget=Budget(steps=steps),
                                 evaluation=Evaluation(episodes=eval_episodes))
            tasks_to_train.append(TrialTask(len(tasks_to_train), f"{task}|{name}", task,
                                            InlineSource(name=f"c{i}", source=source), config, str(trial_dir)))
        per_task_rows[task] = rows
        print(f"{task}: {len(rows)} candidates checked; trajectories {collect_s:.1f} s", flush=True)

    outcomes: dict[int, Any] = {}
    backend = LocalBackend(workers)
    try:
        queue = list(tasks_to_train)
        while queue or backend.in_flight():
            while queue and backend.in_flight() < backend.capacity:
                backend.submit(queue.pop(0))
            for done, outcome in backend.wait(5.0):
                outcomes[done.trial_id] = outcome
                print(f"  trained {done.key}: {outcome.error or 'ok'}", flush=True)
    finally:
        backend.shutdown(cancel=True)

    flat = [row for rows in per_task_rows.values() for row in rows]
    for row, task in zip(flat, tasks_to_train, strict=True):
        result = outcomes[task.trial_id].result
        row["success"] = result.final("success") if result is not None else None
        row["env_return"] = float(result.final("env_return") or 0.0) if result is not None else None
        row["train_s"] = result.wall_s if result is not None else None
        row["error"] = outcomes[task.trial_id].error

    summary: dict[str, Any] = {}
    for task, rows in per_task_rows.items():
        ok = [r for r in rows if r["success"] is not None]
        successes = [r["success"] for r in ok]
        basis = "success" if len(set(successes)) > 1 else "env return"
        trained = [r["success"] if basis == "success" else r["env_return"] for r in ok]
        summary[task] = {"candidates": len(rows), "trained": len(ok), "basis": basis,
                         "rho": spearman([r["check"] for r in ok], trained),
                         "rho_all_trajectories": spearman([r["rho"] for r in ok], trained), "rows": rows}
    rhos = [s["rho"] for s in summary.values() if not math.isnan(s["rho"])]
    check_s = sum(r["check_s"] + r["collect_s"] for r in flat)
    train_s = sum(r["train_s"] or 0.0 for r in flat)
    return {
        "figure": "Spearman rho between the preference check's score and trained success (env return where no "
                  "candidate succeeds), per task; the check's compute as a fraction of the training it replaces",
        "rho_mean_over_tasks": sum(rhos) / len(rhos) if rhos else float("nan"),
        "tasks_with_rho": len(rhos), "candidates": len(flat),
        "check_fraction_of_training": check_s / train_s if train_s else float("nan"),
        "check_s_total": check_s, "train_s_total": train_s,
        "steps": steps, "algo": algo, "eval_episodes": eval_episodes, "tasks": summary,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }


def main() -> None:
    from rewardlab.runtime import limit_threads

    limit_threads()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--per-task", type=int, default=9, help="candidates per task (at most)")
    parser.add_argument("--steps", type=int, default=6000, help="training steps per candidate")
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_preference.json"))
    args = parser.parse_args()
    if args.per_task < 3 or args.eval_episodes < 1 or args.steps < 1:
        parser.error("--per-task needs at least 3 (a rank correlation), --eval-episodes and --steps at least 1")
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-") as tmp:
        report = run(args.tasks, args.per_task, args.steps, args.algo, args.eval_episodes, args.workers, Path(tmp))
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{report['candidates']} candidates: mean rho over {report['tasks_with_rho']} tasks "
          f"{report['rho_mean_over_tasks']:.3f}; check compute {100 * report['check_fraction_of_training']:.2f}% "
          f"of training; wrote {args.out}")


if __name__ == "__main__":
    main()
