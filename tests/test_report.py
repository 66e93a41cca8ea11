"""The run report from a synthetic store: tables with mean and 95% CI, curves, failed trials."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rewardlab.errors import UserError
from rewardlab.runs.report import write_report
from rewardlab.runs.spec import TrialSpec
from rewardlab.runs.store import RunStore
from rewardlab.stats import mean_ci, mean_ci_curves

TASK = "mujoco/InvertedPendulum-v5"
OTHER = "mujoco/Hopper-v5"


def _result(final: float, program: float | None, success: float | None, offset: float = 0.0) -> dict:
    curve = [
        {"step": s, "return_env": final * s / 2000 + offset, "return_program": program, "success": success}
        for s in (500, 1000, 1500, 2000)
    ]
    return {
        "curve": curve,
        "eval": {
            "return_env": [final - 1, final + 1],
            "return_program": None if program is None else [program, program],
            "success": None if success is None else [success, success],
            "length": [1000, 1000],
        },
        "wall_s": 12.0,
        "steps": 2000,
        "model_path": "model.zip",
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("tiny-20250101-000000", "tiny", "name: tiny\ndescription: A small test.\n")
        trials = [
            TrialSpec(TASK, reward, reward, "ppo", seed, 2000)
            for reward in ("env", "reference")
            for seed in (0, 1, 2)
        ] + [TrialSpec(OTHER, "env", "env", "sac", 0, 2000), TrialSpec(OTHER, "env", "env", "sac", 1, 2000)]
        store.add_trials("tiny-20250101-000000", trials)
        rows = {t.key: t for t in store.trials("tiny-20250101-000000")}
        finals = {0: 100.0, 1: 110.0, 2: 120.0}
        for t in trials:
            row = rows[t.key]
            store.mark_running(row.id, out / "x")
            if t.task == OTHER and t.seed == 1:
                store.mark_failed(row.id, "RewardProgramError: reward program rejected [non-finite] | bad")
                continue
            program = None if t.reward == "env" else 50.0 + t.seed
            result = _result(finals[t.seed], program, 1.0 if t.task == TASK else None, offset=t.seed)
            metrics = [(p["step"], "return_env", p["return_env"]) for p in result["curve"]]
            store.mark_done(row.id, result, metrics)
    return out / "tiny-20250101-000000"


def test_mean_ci_uses_the_t_distribution() -> None:
    ci = mean_ci([100.0, 110.0, 120.0])
    assert ci.mean == pytest.approx(110.0)
    # t_{0.975, 2} = 4.3027; std = 10; half-width = 4.3027 * 10 / sqrt(3)
    assert ci.half_width == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)
    assert ci.format() == "110.00 ± 24.84"
    single = mean_ci([5.0])
    assert single.half_width is None and single.format() == "5.00 (n=1, no CI)"
    assert mean_ci([]).format() == "—"
    mean, half = mean_ci_curves([[1.0, 2.0], [3.0, 4.0]])
    assert mean.tolist() == [2.0, 3.0] and half is not None and half.shape == (2,)
    assert mean_ci_curves([[1.0, 2.0]])[1] is None


def test_report_has_a_table_per_task_with_ci(run_dir: Path) -> None:
    report = write_report(run_dir)
    assert report == run_dir / "report.md"
    text = report.read_text()
    assert "# tiny-20250101-000000" in text and "A small test." in text
    assert f"## {TASK}" in text and f"## {OTHER}" in text
    assert "| reward | algo | seeds | env return | program return | success | steps | wall s (mean) |" in text
    assert "| env | ppo | 3 | 110.00 ± 24.84 | — | 1.00 ± 0.00 | 2000 | 12 |" in text
    assert "| reference | ppo | 3 | 110.00 ± 24.84 | 51.00 ± 2.48 | 1.00 ± 0.00 | 2000 | 12 |" in text
    # the other task has no program and no success rule: no such columns, and one seed has no CI
    other = text.split(f"## {OTHER}")[1]
    assert "| reward | algo | seeds | env return | steps | wall s (mean) |" in other
    assert "| env | sac | 1 of 2 | 100.00 (n=1, no CI) | 2000 | 12 |" in other
    assert "rewardlab report tiny-20250101-000000 --out" in text


def test_report_embeds_learning_curves(run_dir: Path) -> None:
    text = write_report(run_dir).read_text()
    for task in (TASK, OTHER):
        png = run_dir / f"curves_{task.replace('/', '_')}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in text


def test_report_lists_failed_trials_with_their_error(run_dir: Path) -> None:
    text = write_report(run_dir).read_text()
    failed = text.split("## Failed trials")[1]
    assert "mujoco/Hopper-v5\\|env\\|sac\\|1" in failed
    assert "reward program rejected [non-finite] \\| bad" in failed
    assert "1 failed" in text


def test_report_accepts_a_run_id_and_out(run_dir: Path) -> None:
    report = write_report("tiny-20250101-000000", out=run_dir.parent)
    assert report == run_dir / "report.md"


def test_unknown_run_is_a_user_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no run 'nope'.*recent runs: tiny-20250101-000000"):
        write_report("nope", out=run_dir.parent)
    with pytest.raises(UserError, match="no run store at"):
        write_report("nope", out=tmp_path / "empty")


def test_curves_with_different_eval_steps_are_interpolated(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("r-1", "r", "name: r\n")
        store.add_trials("r-1", [TrialSpec(TASK, "env", "env", "ppo", s, 2000) for s in (0, 1)])
        for row, steps in zip(store.trials("r-1"), ([0, 1000, 2000], [0, 700, 1400, 2000])):
            store.mark_running(row.id, out)
            store.mark_done(row.id, _result(10.0, None, None), [(s, "return_env", s / 100) for s in steps])
    text = write_report(out / "r-1").read_text()
    assert (out / "r-1" / f"curves_{TASK.replace('/', '_')}.png").is_file() and "curves_" in text


def test_final_values_accept_the_trainers_key_names() -> None:
    from rewardlab.runs.report import final_value

    result = {"eval": {"env_return": [1.0, 3.0], "program_return": [None, None], "success": [True, False]}}
    assert final_value(result, "return_env") == 2.0
    assert final_value(result, "return_program") is None
    assert final_value(result, "success") == 0.5
    assert final_value({"eval": {"return_env": [4.0]}}, "return_env") == 4.0
    assert final_value(None, "return_env") is None
