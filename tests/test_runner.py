"""The trial runner with real training, real processes and a real SQLite store: a run killed with
SIGKILL resumes without redoing finished trials; a failing trial does not stop the run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rewardlab.errors import UserError
from rewardlab.runs.runner import _execute, curve_metrics, run_experiment
from rewardlab.runs.spec import TrialSpec
from rewardlab.runs.store import RunStore

TASK = "mujoco/InvertedPendulum-v5"
REPO = Path(__file__).resolve().parents[1]
NON_FINITE = '''import numpy as np

def compute_dense_reward(self, action):
    return np.log(np.abs(self.pole.angle) - 10.0), {}
'''


def _write_spec(folder: Path, **overrides: object) -> Path:
    spec = {
        "name": "tiny",
        "description": "Runner test: two rewards, two seeds, a tiny budget.",
        "tasks": [TASK],
        "rewards": ["env", "reference"],
        "algorithms": ["ppo"],
        "seeds": [0, 1],
        "budget": {"steps": 2048},
        "evaluation": {"episodes": 2},
        "workers": 2,
        **overrides,
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rewardlab", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "120"}


def _trials(db: Path) -> list[dict]:
    """The trials table, read without the store (it must be readable by anyone, mid-run)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM trials ORDER BY id")]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path)
    out = tmp_path / "runs"
    db = out / "rewardlab.sqlite"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(_cli("run", str(spec), "--out", str(out)), cwd=tmp_path, env=_env(),
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        done: list[dict] = []
        workers: list[int] = []
        while not done:
            assert first.poll() is None, "the run ended early: " + (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no trial finished within 90 s"
            time.sleep(0.1)
            if db.is_file():
                try:
                    trials = _trials(db)
                except sqlite3.OperationalError:  # schema not created yet
                    continue
                workers = _children(first.pid) or workers
                done = [t for t in trials if t["status"] == "done"]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()

    before = {t["key"]: t for t in _trials(db)}
    assert len(before) == 4
    assert any(t["status"] != "done" for t in before.values()), "every trial finished before the kill"
    print("before resume:", {k: t["status"] for k, t in before.items()}, "workers:", workers)
    # The workers die with the main process, so none keeps writing into a trial directory.
    assert workers or not Path("/proc").is_dir()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "worker processes outlived the killed run"
    # A partial directory of an unfinished trial is cleared before the trial runs again.
    stale = [Path(t["dir"]) / "stale.txt" for t in before.values() if t["status"] != "done" and t["dir"]]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by the killed run")

    resumed = subprocess.run(_cli("run", str(spec), "--out", str(out), "--resume"), cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming tiny-" in resumed.stdout

    after = {t["key"]: t for t in _trials(db)}
    assert sorted(after) == sorted(before)  # every trial exactly once (keys are unique per run)
    assert all(t["status"] == "done" for t in after.values()), after
    for key, t in before.items():
        if t["status"] == "done":  # finished before the kill: not redone
            assert (after[key]["started"], after[key]["finished"], after[key]["result_json"]) == (
                t["started"], t["finished"], t["result_json"])
        else:
            assert after[key]["started"] != t["started"]
    assert not any(path.exists() for path in stale)

    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.status == "done"
        assert all(store.metrics(t.id, "return_env") for t in store.trials(run.id))
    run_dir = out / run.id
    report = (run_dir / "report.md").read_text()
    assert f"## {TASK}" in report
    assert "| reward | algo | seeds | env return |" in report
    assert "| env | ppo | 2 |" in report and "| reference | ppo | 2 |" in report
    png = run_dir / "curves_mujoco_InvertedPendulum-v5.png"
    assert png.is_file() and f"]({png.name})" in report


def test_a_failing_trial_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(NON_FINITE)
    spec = _write_spec(tmp_path, rewards=["env", "bad.py"], seeds=[0], budget={"steps": 1024})
    from rich.console import Console

    console = Console(record=True, width=200)
    run_dir = run_experiment(spec, out=tmp_path / "runs", console=console)
    with RunStore(tmp_path / "runs" / "rewardlab.sqlite") as store:
        env, bad = store.trials(run_dir.name)
        assert env.status == "done" and env.result is not None
        assert bad.status == "failed" and bad.error and "\n" not in bad.error
        assert "non-finite" in bad.error or "finite" in bad.error, bad.error
        program = store.get_program(bad.program_id or "")
        assert program is not None and program.origin == "file"
        assert store.get_run(run_dir.name).status == "failed"  # type: ignore[union-attr]
    assert (Path(bad.dir) / "error.txt").is_file()
    text = console.export_text()
    assert "failed" in text and "1 done, 1 failed" in text
    assert "## Failed trials" in (run_dir / "report.md").read_text()


def test_ray_backend_is_not_available_yet(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="the ray backend is not available yet; use --backend local"):
        run_experiment(_write_spec(tmp_path), out=tmp_path / "runs", backend="ray")


def test_resume_without_a_previous_run_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to resume: no run of spec 'tiny'"):
        run_experiment(_write_spec(tmp_path), out=tmp_path / "runs", resume=True)


def test_invalid_spec_is_reported_by_the_cli_on_one_line(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, algorithms=["dqn"])
    done = subprocess.run(_cli("run", str(spec), "--out", str(tmp_path / "runs")), cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())  # (the CLI's console may wrap one long line for the terminal)
    assert "field 'algorithms.0': unknown algorithm 'dqn'" in message, done.stderr


def test_curve_metrics_keep_every_number_of_every_point() -> None:
    result = {"curve": [
        {"step": 100, "return_env": 5.0, "return_program": None, "success": True, "length": 40},
        {"step": 200, "return_env": 7.5, "return_program": None, "success": None, "length": 60.0},
    ]}
    assert curve_metrics(result) == [
        (100, "return_env", 5.0), (100, "success", 1.0), (100, "length", 40.0),
        (200, "return_env", 7.5), (200, "length", 60.0),
    ]


def _crash_on_seed_1(trial: TrialSpec, trial_dir: str) -> dict:
    """Stand-in for training, run in a worker: seed 1 kills its worker, seed 0 takes a while."""
    if trial.seed == 1:
        os._exit(3)
    time.sleep(5.0 if trial.seed == 0 else 0.0)  # usually still running when the pool breaks
    return {"result": {"curve": [{"step": 10, "return_env": 1.0}], "eval": {"return_env": [1.0]}, "steps": 10}}


def test_a_dead_worker_fails_its_trials_and_the_run_goes_on(tmp_path: Path) -> None:
    from rich.console import Console

    trials = [TrialSpec(TASK, "env", "env", "ppo", seed, 10) for seed in (0, 1, 2)]
    with RunStore(tmp_path / "rewardlab.sqlite") as store:
        store.create_run("r-1", "r", "")
        store.add_trials("r-1", trials)
        todo = list(zip(store.trials("r-1"), trials))
        _execute(store, "r-1", todo, tmp_path / "r-1", 2, Console(quiet=True), "resume", work=_crash_on_seed_1)
        slow, crashed, after = store.trials("r-1")
    assert crashed.status == "failed" and "worker process died" in (crashed.error or "")
    # the slow trial is lost with the broken pool, or finished first if the pool started one worker at a time
    assert (slow.status == "failed" and "worker" in (slow.error or "")) or (slow.status == "done" and slow.result)
    assert after.status == "done" and after.result is not None  # a fresh pool ran the rest
