"""The MoE policy's cost: forward+backward time ÷ a dense MLP with the same active parameters, per router.

    python -m benchmarks.moe [--quick] [--out benchmarks/results_moe.json]

For each router of :mod:`rewardlab.moe.routers` (default settings, E = 4 experts, two MoE layers of
width 256 on a 49-d input: MetaWorld MT10's 39-d observation + a 10-d one-hot task id), and each batch
size SB3 trains with here (PPO: 64, SB3's default, and 100, the MetaWorld preset; SAC: 256, SB3's
default, and 512, the MetaWorld preset), one training step's forward+backward (loss = sum of the
outputs) is timed in train mode, interleaved with the dense baseline (MoE, dense, dense, MoE, ...),
the minimum of ``repeats`` (medians recorded too). The dense baseline is an MLP of two equal hidden
layers whose width is chosen so that its parameter count matches the MoE network's *active* parameters (the parameters one token
uses: router, shared experts and ``k`` of the ``E`` routed experts; all ``E`` for dense routers).

Beside it, the MoE layer's two compute modes on the same network: ``grouped`` (dispatched pairs only,
one ``bmm``) ÷ ``dense`` (every expert, masked) — the measurement behind the default ``dense``.
One torch thread; machine and versions recorded.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rewardlab.moe.layers import MoEMLP, count_parameters
from rewardlab.runtime import limit_threads

REPO = Path(__file__).resolve().parents[1]
D_IN, WIDTHS, EXPERTS = 49, [256, 256], 4
#: router name -> (settings, experts active per token for the active-parameter count; None = all E)
ROUTERS: dict[str, tuple[dict[str, Any], int | None]] = {
    "topk": ({"k": 2}, 2),
    "prototyping": ({"k": 2}, 2),
    "expert_choice": ({"capacity_factor": 2.0}, 2),  # c·N/E tokens per expert: c = 2 experts per token on average
    "norm_sigmoid": ({"k": 2}, 2),
    "softmax": ({}, None),
    "modified_softmax": ({}, None),
    "dense_to_sparse": ({}, None),  # dense at the start of training (τ = τ_max)
    "tsallis": ({}, None),  # soft mode activates every expert; top-p fewer
    "task_attention": ({}, None),
    "soft_moe": ({"tokens": 4}, None),  # every expert processes its slots for every sample
}
BATCHES = {"ppo": [64, 100], "sac": [256, 512]}


def dense_mlp(d_in: int, target_params: int) -> nn.Module:
    """Two hidden ReLU layers of width ``w`` with ``d_in·w + w + w·w + w`` closest to ``target_params``."""
    a, b, c = 1.0, d_in + 2.0, -float(target_params)
    w = max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))
    return nn.Sequential(nn.Linear(d_in, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())


def _step_time(model: nn.Module, x: torch.Tensor, task: torch.Tensor | None) -> float:
    start = time.perf_counter()
    out = model(x, task) if isinstance(model, MoEMLP) else model(x)
    out.sum().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(router: str, batch: int, repeats: int, compute: str = "dense") -> dict[str, Any]:
    settings, k_active = ROUTERS[router]
    torch.manual_seed(0)
    moe = MoEMLP(D_IN, WIDTHS, router=router, n_experts=EXPERTS, n_shared=1 if router == "norm_sigmoid" else 0,
                 router_kwargs=settings, n_tasks=10, compute=compute)
    active = count_parameters(moe, active_only=True, k_active=k_active)
    dense = dense_mlp(D_IN, active)
    x = torch.randn(batch, D_IN)
    task = torch.eye(10)[torch.arange(batch) % 10]
    for _ in range(3):  # warm-up: allocator, first-call dispatch
        _step_time(moe, x, task)
        _step_time(dense, x, None)
    t_moe, t_dense = [], []
    for i in range(repeats):
        pair = [(t_moe, moe), (t_dense, dense)]
        for store, model in (pair if i % 2 == 0 else pair[::-1]):
            store.append(_step_time(model, x, task if model is moe else None))
    # the minimum is the headline (timeit's advice): on a shared, loaded machine preemption only ever adds
    # time, and single-step medians swung 10x here between runs; medians stay in the JSON
    m, d = min(t_moe), min(t_dense)
    return {"router": router, "batch": batch, "moe_ms": 1e3 * m, "dense_ms": 1e3 * d, "ratio": m / d,
            "moe_median_ms": 1e3 * statistics.median(t_moe), "dense_median_ms": 1e3 * statistics.median(t_dense),
            "moe_params": count_parameters(moe), "active_params": active,
            "dense_params": sum(p.numel() for p in dense.parameters())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.moe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny repeat counts: a smoke test, numbers meaningless")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_moe.json")
    args = parser.parse_args(argv)
    limit_threads()
    repeats = 3 if args.quick else 20
    start = time.perf_counter()
    rows = []
    for algo, batches in BATCHES.items():
        for batch in batches[:1] if args.quick else batches:
            for router in ROUTERS:
                row = measure(router, batch, repeats)
                grouped = measure(router, batch, repeats, compute="grouped")
                row.update(algo=algo, grouped_ms=grouped["moe_ms"], grouped_over_dense=grouped["moe_ms"] / row["moe_ms"])
                rows.append(row)
                print(f"{algo} B={batch:4d} {router:17s} moe {row['moe_ms']:6.2f} ms  dense-matched {row['dense_ms']:6.2f} ms "
                      f" ratio {row['ratio']:5.2f}  grouped/dense {row['grouped_over_dense']:5.2f}")
    results = {
        "figure": "MoE forward+backward time / dense MLP of matched active parameters",
        "quick": args.quick, "repeats": repeats, "experts": EXPERTS, "widths": WIDTHS, "d_in": D_IN, "rows": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_ratio_by_router": {name: statistics.median(r["ratio"] for r in rows if r["router"] == name) for name in ROUTERS},
        "grouped_faster_share": sum(r["grouped_over_dense"] < 1 for r in rows) / len(rows),
        "total_wall_s": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
