"""How well does the trajectory preference check predict trained success? (issue 3, part 6)

For each task, a generation run proposes candidates; each is scored by the pre-training check
(preference accuracy on expert / perturbed / random / idle / reach-and-halt trajectories) and by a
training probe (evaluation success rate, or env return when no candidate succeeds). The figure is
Spearman's rho between the two over the candidates of each task, then averaged over tasks.

    python -m benchmarks.preference_spearman [--provider offline|openai ...] [--tasks ...] [--samples 4]
        [--probe-steps 6000] [--probe-algo sac] [--out benchmarks/results_preference.json]

With the default offline provider the candidates are hand-written rewards of *other* tasks adapted to
the target (a no-LLM baseline), so the figure measures the check on that population, not on LLM output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho (NaN when either side is constant or there are fewer than 3 points)."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return float(spearmanr(xs, ys).statistic)


def run(tasks: list[str], provider: str, model: str | None, base_url: str | None, samples: int,
        probe_steps: int, probe_algo: str, out_root: Path) -> dict[str, Any]:
    from rewardlab.config import GenerationConfig
    from rewardlab.runtime import limit_threads
    from rewardlab.store import DB_NAME, RunStore
    from rewardlab.text2reward.loop import generate

    limit_threads()
    per_task: dict[str, Any] = {}
    for task in tasks:
        started = time.perf_counter()
        cfg = GenerationConfig(provider=provider, model=model, base_url=base_url, samples=samples,
                               rounds=1, probe_steps=probe_steps, probe_algo=probe_algo, use_memory=False)
        result = generate(task, cfg, out=out_root)
        with RunStore(out_root / DB_NAME) as store:
            rows = [c for c in store.candidates(run_id=result.run_id) if c.status == "trained"]
        accuracy = [c.checks["preference"]["accuracy"] for c in rows]
        success = [c.score for c in rows]
        env_return = [sum(c.probe["eval"]["env_return"]) / len(c.probe["eval"]["env_return"]) for c in rows]
        per_task[task] = {
            "candidates": len(rows), "preference_accuracy": accuracy, "probe_score": success,
            "probe_env_return": env_return, "rho_score": spearman(accuracy, success),
            "rho_env_return": spearman(accuracy, env_return), "wall_s": time.perf_counter() - started,
        }
        print(f"{task}: {len(rows)} candidates, rho(score) {per_task[task]['rho_score']:.3f}, "
              f"rho(env return) {per_task[task]['rho_env_return']:.3f}", flush=True)

    def mean(key: str) -> float:
        vals = [t[key] for t in per_task.values() if not math.isnan(t[key])]
        return float(sum(vals) / len(vals)) if vals else float("nan")

    return {"figure": "Spearman rho, preference accuracy vs probe-trained score, mean over tasks",
            "rho_score": mean("rho_score"), "rho_env_return": mean("rho_env_return"),
            "provider": provider, "model": model, "samples": samples, "probe_steps": probe_steps,
            "probe_algo": probe_algo, "tasks": per_task,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["metaworld/drawer-close-v3", "metaworld/reach-v3"])
    parser.add_argument("--provider", default="offline")
    parser.add_argument("--model", default=None)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--probe-steps", type=int, default=6000)
    parser.add_argument("--probe-algo", default="sac")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_preference.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-") as tmp:
        report = run(args.tasks, args.provider, args.model, args.base_url, args.samples, args.probe_steps,
                     args.probe_algo, Path(tmp))
    args.out.write_text(json.dumps(report, indent=1))
    print(f"mean rho (score) {report['rho_score']:.3f}; mean rho (env return) {report['rho_env_return']:.3f}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
