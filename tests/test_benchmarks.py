"""Smoke test of the benchmark code paths: ``python -m benchmarks.run --quick`` writes the three figures.

It checks the JSON's shape, types and internal consistency only, never a speed: the quick sizes are far
too small for the figures to mean anything, and CI machines are noisy.
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
FIGURES = {"reward_path_cost": "a", "batched_speedup": "b", "check_seconds": "c"}


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

    # (a): the reward path's measured cost is the headline, the paired ratios and their IQR beside it
    a = data["figures"]["reward_path_cost"]
    n_pairs = data["sizes"]["train_pairs"]
    assert 0 < a["value"] < 25  # a fraction of the env's step; RewardVecEnv stops training above 25x
    assert a["value"] == a["spread"]["median"] and a["spread"]["n"] == n_pairs
    assert a["spread"]["q1"] <= a["value"] <= a["spread"]["q3"] and a["spread"]["iqr"] >= 0
    assert _number(a["us_per_vector_step"]["median"]) and a["us_per_vector_step"]["median"] > 0
    assert a["env_us_per_vector_step"]["median"] > 0
    assert 0 < a["share_of_training_time"]["median"] < 1
    assert 0 < a["implied_ratio"]["median"] < 1 and isinstance(a["implied_ratio"]["met"], bool)
    ratio = a["throughput_ratio"]
    assert len(ratio["values"]) == n_pairs and all(_number(x) and x > 0 for x in ratio["values"])
    assert _number(ratio["iqr"]) and ratio["iqr"] >= 0 and ratio["q1"] <= ratio["median"] <= ratio["q3"]
    assert isinstance(a["resolvable"], bool)
    assert a["resolvable"] == (not ratio["q1"] <= a["goal"]["value"] <= ratio["q3"])
    # the verdict on the 0.97 goal: none when the IQR is too wide to resolve it
    assert (a["met"] is None) if not a["resolvable"] else isinstance(a["met"], bool)
    assert isinstance(a["verdict"], str) and a["verdict"] in proc.stdout
    assert len(a["pairs"]) == n_pairs
    assert {r["arm"] for r in a["samples"]} == {"native", "program"}
    assert all(_number(r["steps_per_s"]) and r["steps"] > 0 for r in a["samples"])
    for run in a["samples"]:
        if run["arm"] == "program":
            cost = run["reward_cost"]
            assert cost["vector_steps"] > 0 and cost["reward_s"] > 0 and cost["env_s"] > 0
            assert cost["fraction"] == pytest.approx(cost["reward_s"] / cost["env_s"])
    diag = a["diagnostics"]
    assert set(diag["env_step_us"]["median"]) == {"bare", "native", "program"}
    assert _number(diag["wrapper_step_us"]["program_minus_native"])
    assert diag["profile_top"] and all(isinstance(r["function"], str) for r in diag["profile_top"])
    assert "reward path" in proc.stdout and "IQR" in proc.stdout

    b = data["figures"]["batched_speedup"]
    assert b["batch_size"] == data["sizes"]["batch_size"]
    assert len(b["tasks"]) == 2
    for task in b["tasks"].values():
        assert task["results_agree"] is True  # the batched call and the loop compute the same rewards
        assert task["mode"] == "batched"
        assert len(task["repeat_ratios"]) == data["sizes"]["batch_repeats"]
        assert all(_number(x) and x > 0 for x in task["us_per_state"]["batched"] + task["us_per_state"]["loop"])

    c = data["figures"]["check_seconds"]
    assert isinstance(c["met"], bool) and isinstance(c["cold_met"], bool)
    assert len(c["programs"]) == 2
    for prog in c["programs"].values():
        assert prog["ok"] is True, prog["message"]
        assert _number(prog["cold_in_process_seconds"])
        assert len(prog["warm_seconds"]) == data["sizes"]["check_runs"]
        assert all(_number(x) and x > 0 for x in prog["warm_seconds"])
    assert set(c["cold"]) == set(c["programs"])
    for cid, cold in c["cold"].items():
        assert cold["ok"] is True, cold["message"]
        assert cold["seconds"]["n"] == data["sizes"]["cold_repeats"] and cold["seconds"]["median"] > 0
        assert c["cold_seconds"][cid] == cold["seconds"]["median"]
        assert {"import_simulator", "make_env", "rollout", "trial_alone"} <= set(cold["parts"])
    assert "goal_set" in c["cold"]["metaworld/drawer-open-v3"]["parts"]
    assert c["cold_value"] == max(c["cold_seconds"].values())


@pytest.mark.slow
def test_preference_spearman_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks.preference_spearman import candidate_pool, run, spearman
    from rewardlab.cards import load_card

    assert spearman([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    names = [name for name, _ in candidate_pool(load_card("metaworld/drawer-close-v3"), 9)]
    assert names[:4] == ["reference", "drop-reach", "drop-push", "drop-success"] and "action-penalty" in names
    # 2000 steps: one PPO rollout of the MetaWorld preset (500 x 4 envs), the least a probe may train
    report = run(["metaworld/reach-v3"], per_task=3, steps=2000, algo="ppo", eval_episodes=1, workers=2,
                 out_root=tmp_path)
    task = report["tasks"]["metaworld/reach-v3"]
    assert task["candidates"] == task["trained"] == 3 and report["candidates"] == 3
    assert all(isinstance(r["env_return"], float) and r["check_s"] > 0 for r in task["rows"])
    assert 0 < report["check_fraction_of_training"] < 1
