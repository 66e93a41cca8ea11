"""The trial runner with real training, real processes and a real SQLite store: a run killed with
SIGKILL resumes without redoing finished trials; a failing trial does not stop the run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from run_helpers import TASK, cli, cli_env, read_trials, write_spec

from rewardlab.errors import UserError
from rewardlab.runs.backends.base import TrialOutcome, TrialTask
from rewardlab.runs.backends.local import LocalBackend
from rewardlab.runs.runner import curve_metrics, run_experiment
from rewardlab.store import RunStore
from rewardlab.types import CurvePoint, EvalResult, TrialResult

NON_FINITE = '''import numpy as np

def compute_dense_reward(self, action):
    return np.log(np.abs(self.pole.angle) - 10.0), {}
'''


def _write_spec(folder: Path, **overrides: object) -> Path:
    return write_spec(folder, **overrides)


_cli, _env, _trials = cli, cli_env, read_trials


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
    spec = _write_spec(tmp_path, budget={"steps": 6144})  # long enough to still be running after the check below
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
        # A second process on the same run is refused while the first holds it (it would train the same
        # trials in the same directories).
        second = subprocess.run(_cli("run", str(spec), "--out", str(out), "--resume"), cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"is being worked on by process {first.pid}" in second.stderr, second.stderr
        assert len([line for line in second.stderr.splitlines() if line.strip()]) == 1
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
    assert "interrupted trial(s) to redo" in resumed.stdout

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
    summary = run_experiment(spec, out=tmp_path / "runs", console=console)
    run_dir = summary.run_dir
    assert summary.status == "failed" and summary.failed == 1
    with RunStore(tmp_path / "runs" / "rewardlab.sqlite") as store:
        env, bad = store.trials(run_dir.name)
        assert env.status == "done" and env.result is not None
        assert bad.status == "failed" and bad.error and "\n" not in bad.error
        assert "non-finite" in bad.error or "finite" in bad.error, bad.error
        program = store.get_program(bad.program_id or "")
        assert program is not None and program.origin == "file"
        run = store.get_run(run_dir.name)
        assert run is not None and run.status == "failed" and run.reason == "1 of 2 trials failed"
    assert (Path(bad.dir) / "error.txt").is_file()
    text = console.export_text()
    assert "failed" in text and "1 done, 1 failed" in text
    assert "## Failed trials" in (run_dir / "report.md").read_text()


def test_resume_without_a_previous_run_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to resume: no run of spec 'tiny'"):
        run_experiment(_write_spec(tmp_path), out=tmp_path / "runs", resume=True)


def test_invalid_spec_is_reported_by_the_cli_on_one_line(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, algorithms=["a2c"])
    done = subprocess.run(_cli("run", str(spec), "--out", str(tmp_path / "runs")), cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())  # (the CLI's console may wrap one long line for the terminal)
    assert "field 'algorithms': unknown algorithm 'a2c' for trainer 'sb3'" in message, done.stderr


def test_curve_metrics_keep_every_number_of_every_point() -> None:
    result = TrialResult(curve=[
        CurvePoint(step=100, return_env=5.0, success=1.0, length=40, components={"reach": 2.0}),
        CurvePoint(step=200, return_env=7.5, length=60.0),
    ])
    assert curve_metrics(result) == [
        (100, "return_env", 5.0), (100, "success", 1.0), (100, "length", 40.0), (100, "component/reach", 2.0),
        (200, "return_env", 7.5), (200, "length", 60.0),
    ]


def _crash_on_seed_1(task: TrialTask) -> TrialOutcome:
    """Stand-in for training, run in a worker: seed 1 kills its worker, seed 0 takes a while."""
    if task.config.seed == 1:
        os._exit(3)
    time.sleep(3.0 if task.config.seed == 0 else 0.0)  # still running when the other worker dies
    return TrialOutcome(result=TrialResult(curve=[CurvePoint(step=10, return_env=1.0)],
                                           eval=EvalResult(env_return=[1.0]), steps=10))


def test_a_dead_worker_fails_only_its_trial_and_the_run_goes_on(tmp_path: Path) -> None:
    from rich.console import Console

    spec = _write_spec(tmp_path, rewards=["env"], seeds=[0, 1, 2])
    summary = run_experiment(spec, out=tmp_path / "runs", console=Console(quiet=True),
                             make_backend=lambda n: LocalBackend(n, work=_crash_on_seed_1))
    with RunStore(tmp_path / "runs" / "rewardlab.sqlite") as store:
        slow, crashed, after = store.trials(summary.run_id)
    assert crashed.status == "failed" and "worker process died (exit code 3" in (crashed.error or "")
    assert slow.status == "done" and slow.result is not None  # the other worker's trial is not lost
    assert after.status == "done" and after.result is not None  # a fresh worker ran the rest
    assert summary.status == "failed" and summary.counts == {"pending": 0, "running": 0, "done": 2, "failed": 1}


# -- runs and the store: faults found by trying it as a new user (each kind, with a test) ----------------
class InlineBackend:
    """Runs each task in this process when it is submitted (fast tests of the runner's bookkeeping)."""

    name = "inline"

    def __init__(self, capacity: int, work=None) -> None:  # type: ignore[no-untyped-def]
        self.capacity = capacity
        self.work = work or _quick_result
        self.done: list = []
        self.ran: list[str] = []

    def submit(self, task: TrialTask) -> None:
        self.ran.append(task.key)
        self.done.append((task, self.work(task)))

    def wait(self, timeout: float) -> list:
        done, self.done = self.done, []
        return done

    def in_flight(self) -> int:
        return len(self.done)

    def shutdown(self, cancel: bool = False) -> None:
        pass


def _quick_result(task: TrialTask) -> TrialOutcome:
    steps = task.config.budget.steps
    return TrialOutcome(result=TrialResult(curve=[CurvePoint(step=steps, return_env=float(task.config.seed))],
                                           eval=EvalResult(env_return=[float(task.config.seed)]), steps=steps,
                                           wall_s=1.0))


UPRIGHT = '''import numpy as np

def compute_dense_reward(self, action):
    return 1.0 - np.abs(self.pole.angle), {}
'''


def _quiet() -> Console:  # noqa: F821
    from rich.console import Console

    return Console(record=True, width=300)


def test_resume_refuses_a_changed_program_or_budget_and_can_rerun_what_changed(tmp_path: Path) -> None:
    (tmp_path / "upright.py").write_text(UPRIGHT)
    spec = _write_spec(tmp_path, rewards=["env", "upright.py"], seeds=[0], budget={"steps": 1024})
    out = tmp_path / "runs"
    backends: list[InlineBackend] = []

    def make(n: int) -> InlineBackend:
        backends.append(InlineBackend(n))
        return backends[-1]

    first = run_experiment(spec, out=out, console=_quiet(), make_backend=make)
    assert first.status == "done"
    (tmp_path / "upright.py").write_text(UPRIGHT.replace("1.0 -", "2.0 -"))  # the reward file is edited
    with pytest.raises(UserError) as info:
        run_experiment(spec, out=out, resume=True, console=_quiet(), make_backend=make)
    message = str(info.value)
    assert "\n" not in message and "|upright|ppo|0 (program" in message and "--rerun-changed" in message
    with RunStore(out / "rewardlab.sqlite") as store:
        run = store.get_run(first.run_id)
        # a refused resume changes nothing: the run stays done, its lease free, its spec copy as it was
        assert run is not None and run.status == "done" and run.holder_pid is None
        old_program = {t.key: t.program_id for t in store.trials(first.run_id)}

    again = run_experiment(spec, out=out, resume=first.run_id, rerun_changed=True, console=_quiet(), make_backend=make)
    assert again.status == "done" and backends[-1].ran == [f"{TASK}|upright|ppo|0"]  # only what changed ran
    with RunStore(out / "rewardlab.sqlite") as store:
        trials = {t.key: t for t in store.trials(first.run_id)}
        new = trials[f"{TASK}|upright|ppo|0"]
        assert new.program_id != old_program[new.key]  # the new program is the one recorded
        record = store.get_program(new.program_id or "")
        assert record is not None and "2.0 -" in record.source

    _write_spec(tmp_path, rewards=["env", "upright.py"], seeds=[0], budget={"steps": 2048})
    with pytest.raises(UserError, match=r"budget 1024 -> 2048 steps"):
        run_experiment(spec, out=out, resume=True, console=_quiet(), make_backend=make)


def test_a_plain_run_mentions_the_unfinished_one_and_resume_takes_a_run_id(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, rewards=["env"], seeds=[0, 1])
    out = tmp_path / "runs"

    def fail_seed_1(task: TrialTask) -> TrialOutcome:
        return TrialOutcome(error="boom") if task.config.seed == 1 else _quick_result(task)

    older = run_experiment(spec, out=out, console=_quiet(), make_backend=lambda n: InlineBackend(n, fail_seed_1))
    assert older.status == "failed" and older.failed == 1
    console = _quiet()
    newer = run_experiment(spec, out=out, console=console, make_backend=lambda n: InlineBackend(n))
    text = " ".join(console.export_text().split())
    assert f"run {older.run_id} of this spec did not finish (failed: 1 of 2 trials done)" in text
    assert f"--resume {older.run_id}" in text and newer.run_id != older.run_id
    resumed = run_experiment(spec, out=out, resume=older.run_id, console=_quiet(), make_backend=lambda n: InlineBackend(n))
    assert resumed.run_id == older.run_id and resumed.status == "done" and resumed.ran == 1 and resumed.before == 1
    with pytest.raises(UserError, match="no run 'nope'"):
        run_experiment(spec, out=out, resume="nope", console=_quiet())


def test_bad_programs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cases = {
        "binary.py": (b"import numpy as np\x00\x01", "is a binary file"),
        "latin.py": ("# caf\u00e9\ndef compute_dense_reward(self, action):\n    return 0.0\n".encode("latin-1"),
                     "not UTF-8 text"),
        "huge.py": (b"x = 1\n" * 2_000_000, "[size]"),
        "evil.py": (b"import os\ndef compute_dense_reward(self, action):\n    return 0.0\n", "[import]"),
    }
    for name, (data, needle) in cases.items():
        (tmp_path / name).write_bytes(data)
        spec = _write_spec(tmp_path, rewards=["env", name], seeds=[0])
        with pytest.raises(UserError) as info:
            run_experiment(spec, out=out, console=_quiet(), make_backend=lambda n: InlineBackend(n))
        assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (out / "rewardlab.sqlite").exists() or RunStore(out / "rewardlab.sqlite").list_runs() == []
    assert not out.exists() or not [p for p in out.iterdir() if p.is_dir()]  # no run directory either


def test_a_config_error_in_a_generated_source_creates_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REWARDLAB_MODEL", raising=False)
    spec = _write_spec(tmp_path, rewards=[{"name": "gen", "generate": {"samples": 1, "rounds": 1, "probe_steps": 0}}],
                       seeds=[0])
    with pytest.raises(UserError, match="reward source 'gen': no model given"):
        run_experiment(spec, out=tmp_path / "runs", console=_quiet(), provider_overrides={"provider": "openai"})
    assert not (tmp_path / "runs" / "rewardlab.sqlite").exists()


def test_a_huge_budget_gets_an_estimate(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, rewards=["env"], seeds=[0], budget={"steps": 100_000_000_000})
    console = _quiet()
    run_experiment(spec, out=tmp_path / "runs", console=console, make_backend=lambda n: InlineBackend(n))
    text = " ".join(console.export_text().split())
    assert "1 trials, 100,000,000,000 steps on 1 worker(s): about" in text and "days" in text


def test_a_trial_directory_that_cannot_be_made_fails_that_trial_with_one_line(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, rewards=["env"], seeds=[0])
    out = tmp_path / "runs"
    summary = run_experiment(spec, out=out, console=_quiet(), make_backend=lambda n: InlineBackend(n))
    (out / summary.run_id / "trials").rename(out / summary.run_id / "old-trials")
    (out / summary.run_id / "trials").write_text("a file where the trials folder should be")
    with RunStore(out / "rewardlab.sqlite") as store:
        store.replace_trial(store.trials(summary.run_id)[0].id, _as_new(store.trials(summary.run_id)[0]))
    again = run_experiment(spec, out=out, resume=True, console=_quiet(), make_backend=lambda n: InlineBackend(n))
    assert again.status == "failed" and again.failed == 1
    (failure,) = again.failures
    assert "cannot prepare the trial directory: Not a directory" in failure and "\n" not in failure


def _as_new(row):  # type: ignore[no-untyped-def]
    from rewardlab.store import NewTrial

    return NewTrial(row.key, row.task, row.reward, row.algo, row.seed, steps=row.steps, trainer=row.trainer,
                    program_id=row.program_id, config_json=row.config_json, source_json=row.source_json)


def test_a_full_disk_fails_the_trial_with_its_own_error(tmp_path: Path) -> None:
    """A trial whose writes hit a full disk fails with that error on one line (not a chained
    traceback), and the run goes on. /dev/full answers every write with ENOSPC."""
    from rewardlab.config import Budget, Evaluation, TrainConfig
    from rewardlab.runs.backends.base import run_trial_task
    from rewardlab.sources import InlineSource

    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / "reward.py").symlink_to("/dev/full")
    (trial_dir / "error.txt").symlink_to("/dev/full")
    config = TrainConfig(algo="ppo", budget=Budget(steps=1024), evaluation=Evaluation(episodes=1))
    task = TrialTask(1, "k", TASK, InlineSource(name="upright", source=UPRIGHT), config, str(trial_dir))
    outcome = run_trial_task(task)
    assert outcome.result is None and outcome.error == f"No space left on device (writing into {trial_dir})"


def test_a_damaged_store_is_one_line_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    (out / "rewardlab.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    spec = _write_spec(tmp_path, rewards=["env"], seeds=[0])
    done = subprocess.run(_cli("run", str(spec), "--out", str(out)), cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "run store" in lines[0] and "rewardlab.sqlite" in lines[0], done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGTERM, "terminated (SIGTERM)"),
                                             (signal.SIGHUP, "lost its terminal (SIGHUP)")])
def test_sigterm_ends_the_run_interrupted_with_one_line(tmp_path: Path, sig: int, reason: str) -> None:
    spec = _write_spec(tmp_path, seeds=[0], budget={"steps": 200_000})
    out = tmp_path / "runs"
    db = out / "rewardlab.sqlite"
    proc = subprocess.Popen(_cli("run", str(spec), "--out", str(out)), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (db.is_file() and any(t["status"] == "running" for t in _safe_trials(db))):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and reason in lines[0] and "--resume tiny-" in lines[0], stderr
    assert "Traceback" not in stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.status == "interrupted" and run.reason and reason in run.reason and run.holder_pid is None
        assert not store.trials(run.id, "running")
    listing = subprocess.run(_cli("runs", "list", "--out", str(out)), env=_env(), capture_output=True, text=True,
                             timeout=60)
    assert listing.returncode == 0 and run.id in listing.stdout and "interrupted" in listing.stdout


def _safe_trials(db: Path) -> list[dict]:
    try:
        return _trials(db)
    except sqlite3.OperationalError:
        return []


def test_the_cli_exits_non_zero_with_the_count_when_trials_fail(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(NON_FINITE)
    spec = _write_spec(tmp_path, rewards=["env", "bad.py"], seeds=[0], budget={"steps": 1024})
    done = subprocess.run(_cli("run", str(spec), "--out", str(tmp_path / "runs")), cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: 1 of 2 trials failed in run tiny-" in done.stderr and "Traceback" not in done.stderr


class ConstantTrainer:
    """A trainer registered from outside: the runner reaches it through the spec's ``trainer:`` name."""

    name = "constant"
    algorithms = ("fixed",)

    def validate(self, card, config) -> None:  # type: ignore[no-untyped-def]
        if config.budget.steps < 10:
            raise UserError("constant trainer: at least 10 steps")

    def train(self, card, reward, config, run_dir, callbacks=(), progress=None, check=True):  # type: ignore[no-untyped-def]
        return TrialResult(curve=[CurvePoint(step=config.budget.steps, return_env=42.0)],
                           eval=EvalResult(env_return=[42.0]), steps=config.budget.steps, trainer=self.name,
                           algo=config.algo)


def test_a_registered_trainer_runs_from_a_spec_without_touching_the_runner(tmp_path: Path) -> None:
    from rewardlab.runs.backends.base import run_trial_task
    from rewardlab.training import TRAINERS, register_trainer

    register_trainer("constant", ConstantTrainer())
    try:
        spec = _write_spec(tmp_path, rewards=["env"], seeds=[0, 1], trainer="constant", algorithms=["fixed"],
                           budget={"steps": 20})
        summary = run_experiment(spec, out=tmp_path / "runs", console=_quiet(),
                                 make_backend=lambda n: InlineBackend(n, run_trial_task))
        assert summary.status == "done"
        with RunStore(tmp_path / "runs" / "rewardlab.sqlite") as store:
            results = [t.result for t in store.trials(summary.run_id)]
        assert all(r is not None and r.trainer == "constant" and r.final("env_return") == 42.0 for r in results)
        with pytest.raises(UserError, match="constant trainer: at least 10 steps"):
            run_experiment(_write_spec(tmp_path, rewards=["env"], seeds=[0], trainer="constant",
                                       algorithms=["fixed"], budget={"steps": 5}), out=tmp_path / "runs",
                           console=_quiet(), make_backend=lambda n: InlineBackend(n, run_trial_task))
    finally:
        TRAINERS.unregister("constant")


def test_a_stop_signal_during_a_worker_start_is_held_until_the_start_is_done() -> None:
    """A SIGTERM half-way through writing a spawned worker's start-up data left the child reading a cut
    pipe, and its traceback landed over the run's one-line message (seen once under load in CI)."""
    import os
    import signal
    import threading

    from rewardlab.runs.backends.local import _stop_signals_held

    seen: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append("handled"))
    # another thread, as in the runner (its heartbeat): the kernel may hand the signal to it
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with _stop_signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes run: a pending Python handler would run here
                pass
            seen.append("start finished")
        assert seen == ["start finished", "handled"]
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)
