"""The run report from a real store: per-task tables of IQM and 95% bootstrap intervals, curves, failed
trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardlab.errors import UserError
from rewardlab.runs.report import write_report
from rewardlab.store import NewTrial, RunStore
from rewardlab.types import CurvePoint, EvalResult, TrialResult

TASK = "mujoco/InvertedPendulum-v5"
OTHER = "mujoco/Hopper-v5"
RUN = "tiny-20250101-000000"


def result(final: float, program: float | None = None, success: float | None = None, offset: float = 0.0,
           steps: int = 2000, wall_s: float = 12.0) -> TrialResult:
    """A trial result whose final evaluation has mean env return ``final`` (two episodes, ``final ± 1``),
    program return ``program`` and success rate ``success`` (ten episodes when given)."""
    episodes = 10 if success is not None else 2
    env = [final - 1, final + 1] * (episodes // 2)
    hits = round((success or 0.0) * episodes)
    curve = [CurvePoint(step=s, return_env=final * s / 2000 + offset, return_program=program, success=success)
             for s in (500, 1000, 1500, 2000)]
    return TrialResult(
        curve=curve,
        eval=EvalResult(
            env_return=env,
            program_return=[program] * episodes,
            success=[None] * episodes if success is None else [i < hits for i in range(episodes)],
            length=[1000] * episodes,
        ),
        wall_s=wall_s, steps=steps, model_path="model.zip",
    )


def new_trial(task: str, reward: str, algo: str, seed: int, steps: int = 2000) -> NewTrial:
    return NewTrial(f"{task}|{reward}|{algo}|{seed}", task, reward, algo, seed, steps=steps)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run(RUN, "tiny", "name: tiny\ndescription: A small test.\n")
        trials = [new_trial(TASK, reward, "ppo", seed) for reward in ("env", "reference") for seed in (0, 1, 2)]
        trials += [new_trial(OTHER, "env", "sac", 0), new_trial(OTHER, "env", "sac", 1)]
        store.add_trials(RUN, trials)
        finals = {0: 100.0, 1: 110.0, 2: 120.0}
        for row in store.trials(RUN):
            store.mark_running(row.id, out / "x")
            if row.task == OTHER and row.seed == 1:
                store.mark_failed(row.id, "RewardProgramError: reward program rejected [non-finite] | bad")
                continue
            program = None if row.reward == "env" else 50.0 + row.seed
            res = result(finals[row.seed], program, 1.0 if row.task == TASK else None, offset=row.seed)
            store.mark_done(row.id, res, [(p.step, "return_env", p.return_env) for p in res.curve])
    return out / RUN


def test_report_has_a_table_per_task_with_iqm_and_interval(run_dir: Path) -> None:
    report = write_report(run_dir)
    assert report == run_dir / "report.md"
    text = report.read_text()
    assert f"# {RUN}" in text and "A small test." in text
    assert f"## {TASK}" in text and f"## {OTHER}" in text
    assert "IQM over seeds with a 95% stratified-bootstrap confidence interval (rliable)" in text
    assert "1 to 3 seeds per cell" in text
    assert "| reward | algo | seeds | env return | program return | success | steps | wall s (mean) |" in text
    # 3 seeds: nothing trimmed, IQM = mean; the bootstrap's 2.5% and 97.5% points are the extreme
    # resamples (each has probability 1/27 > 2.5%): all seeds the lowest, all the highest
    assert ("| env | ppo | 3 | 110.00 [100.00, 120.00] (IQM, n=3) | — | 1.00 [1.00, 1.00] (IQM, n=3) | 2000 | 12 |"
            in text)
    assert ("| reference | ppo | 3 | 110.00 [100.00, 120.00] (IQM, n=3) | 51.00 [50.00, 52.00] (IQM, n=3) "
            "| 1.00 [1.00, 1.00] (IQM, n=3) | 2000 | 12 |") in text
    # the other task has no program and no success rule: no such columns, and one seed has no interval
    other = text.split(f"## {OTHER}")[1]
    assert "| reward | algo | seeds | env return | steps | wall s (mean) |" in other
    assert "| env | sac | 1 of 2 | 100.00 (n=1, no interval) | 2000 | 12 |" in other
    assert "±" not in text


def test_the_report_is_reproducible(run_dir: Path) -> None:
    first = write_report(run_dir).read_text()
    assert write_report(run_dir).read_text() == first


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
    report = write_report(RUN, out=run_dir.parent)
    assert report == run_dir / "report.md"


def test_unknown_run_is_a_user_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"no run 'nope'.*recent runs: {RUN}"):
        write_report("nope", out=run_dir.parent)
    with pytest.raises(UserError, match="no run store at"):
        write_report("nope", out=tmp_path / "empty")


def test_a_run_without_finished_trials_says_so(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("r-0", "r", "name: r\n")
        store.add_trials("r-0", [new_trial(TASK, "env", "ppo", 0)])
    text = write_report(out / "r-0").read_text()
    assert "No finished trials yet." in text and "no finished seeds per cell" in text
    assert not (out / "r-0" / f"curves_{TASK.replace('/', '_')}.png").exists()


def test_seeds_that_trained_different_steps_show_the_range(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("r-1", "r", "name: r\n")
        store.add_trials("r-1", [new_trial(TASK, "env", "ppo", s) for s in (0, 1)])
        for row, steps in zip(store.trials("r-1"), (2048, 2000), strict=True):
            store.mark_running(row.id, out)
            store.mark_done(row.id, result(10.0, steps=steps, wall_s=10.0 + row.seed))
    text = write_report(out / "r-1").read_text()
    assert "| env | ppo | 2 | 10.00 [10.00, 10.00] (IQM, n=2) | 2000–2048 | 10 |" in text


def test_curves_with_different_eval_steps_are_interpolated(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("r-1", "r", "name: r\n")
        store.add_trials("r-1", [new_trial(TASK, "env", "ppo", s) for s in (0, 1)])
        for row, steps in zip(store.trials("r-1"), ([0, 1000, 2000], [0, 700, 1400, 2000]), strict=True):
            store.mark_running(row.id, out)
            store.mark_done(row.id, result(10.0), [(s, "return_env", s / 100) for s in steps])
    text = write_report(out / "r-1").read_text()
    assert (out / "r-1" / f"curves_{TASK.replace('/', '_')}.png").is_file() and "curves_" in text


def test_a_report_of_a_live_run_is_a_snapshot_and_of_a_stopped_one_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("live-1", "live", "name: live\n", hold=True)  # held by this (live) process
        store.add_trials("live-1", [new_trial(TASK, "env", "ppo", 0), new_trial(TASK, "env", "ppo", 1)])
        (first, _) = store.trials("live-1")
        store.mark_running(first.id, out / "x")
        store.mark_done(first.id, result(100.0))
    text = write_report("live-1", out=out).read_text()
    assert "still running (process" in text and "this report is a snapshot" in text
    assert "--resume" not in text  # resuming a held run would be refused
    with RunStore(out / "rewardlab.sqlite") as store:
        store.set_run_status("live-1", "interrupted", "was terminated (SIGTERM)")
    text = write_report("live-1", out=out).read_text()
    assert "status interrupted (was terminated (SIGTERM))" in text
    assert "1 not finished (continue it with `rewardlab run SPEC --out" in text and "--resume live-1`" in text


def test_a_generation_run_is_refused_with_where_to_see_it(tmp_path: Path) -> None:
    # found by a user: `rewardlab report <generation run>` wrote a report saying "0 done"
    from rewardlab.text2reward.loop import GenerationConfig, generate

    result = generate("mujoco/InvertedPendulum-v5", GenerationConfig(provider="offline", samples=1, probe_steps=0,
                                                                     use_memory=False), out=tmp_path)
    with pytest.raises(UserError, match=rf"run {result.run_id} is a generation, not an experiment: .*rewardlab review"):
        write_report(result.run_id, out=tmp_path)
