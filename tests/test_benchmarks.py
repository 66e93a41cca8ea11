"""Smoke test of the benchmark code paths: ``python -m benchmarks.run --quick`` writes the three figures.

It checks the JSON's shape and types only, never a speed: the quick sizes are far too small for the
figures to mean anything, and CI machines are noisy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = {"training_throughput_ratio": "a", "batched_speedup": "b", "check_seconds": "c"}


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_quick_benchmark_writes_the_three_figures(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # REWARDLAB_CACHE: the conftest's temp dir
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout

    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert _number(data["total_wall_s"])
    assert data["machine"]["cpu_count"] >= 1
    assert isinstance(data["versions"]["rewardlab"], str)
    assert set(data["figures"]) == set(FIGURES)
    for name, letter in FIGURES.items():
        fig = data["figures"][name]
        assert fig["figure"] == letter
        assert _number(fig["value"]) and fig["value"] > 0, (name, fig["value"])
        assert fig["goal"]["op"] in (">=", "<=") and _number(fig["goal"]["value"])
        assert isinstance(fig["met"], bool)

    a = data["figures"]["training_throughput_ratio"]
    assert len(a["pairs"]) == data["sizes"]["train_pairs"]
    assert {r["arm"] for r in a["samples"]} == {"native", "program"}
    assert all(_number(r["steps_per_s"]) and r["steps"] > 0 for r in a["samples"])
    diag = a["diagnostics"]
    assert set(diag["env_step_us"]["median"]) == {"bare", "native", "program"}
    assert _number(diag["wrapper_step_us"]["program_minus_native"])
    assert _number(diag["in_training"]["program_minus_native_us"]) and _number(diag["implied_ratio"])
    assert diag["profile_top"] and all(isinstance(r["function"], str) for r in diag["profile_top"])

    b = data["figures"]["batched_speedup"]
    assert b["batch_size"] == data["sizes"]["batch_size"]
    assert len(b["tasks"]) == 2
    for task in b["tasks"].values():
        assert task["results_agree"] is True  # the batched call and the loop compute the same rewards
        assert task["mode"] == "batched"
        assert len(task["repeat_ratios"]) == data["sizes"]["batch_repeats"]
        assert all(_number(x) and x > 0 for x in task["us_per_state"]["batched"] + task["us_per_state"]["loop"])

    c = data["figures"]["check_seconds"]
    assert len(c["programs"]) == 2
    for prog in c["programs"].values():
        assert prog["ok"] is True, prog["message"]
        assert _number(prog["cold_seconds"])
        assert len(prog["warm_seconds"]) == data["sizes"]["check_runs"]
        assert all(_number(x) and x > 0 for x in prog["warm_seconds"])


@pytest.mark.slow
def test_preference_spearman_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks.preference_spearman import run, spearman

    assert spearman([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    report = run(["mujoco/Hopper-v5"], "offline", None, None, samples=3, probe_steps=512, probe_algo="ppo",
                 out_root=tmp_path)
    task = report["tasks"]["mujoco/Hopper-v5"]
    assert task["candidates"] == 3 and len(task["preference_accuracy"]) == 3
    assert all(isinstance(x, float) for x in task["probe_env_return"])
