"""The Ray backend with real local Ray clusters: a run through the CLI, a dead worker, a SIGKILLed run
that resumes with nothing lost or repeated, Ctrl-C. Skipped when the ``ray`` extra is not installed."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from run_helpers import cli, cli_env, read_trials, write_spec

from rewardlab.errors import UserError
from rewardlab.runs.backends.base import TrialOutcome, TrialTask
from rewardlab.runs.backends.ray import TMPDIR_VAR, check_ray, ray_temp_dir
from rewardlab.types import CurvePoint, TrialResult

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed (pip install 'rewardlab[ray]'); CI installs it")

#: Ray processes that are not workers: they write no trial directory and exit by themselves one to three
#: minutes after their raylet is gone.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
#: Where Ray's temp files go by default (the module docstring of rewardlab.runs.backends.ray).
RAY_TMP = Path(f"/tmp/ray-rewardlab-{os.getuid()}")


def _write_spec(folder: Path, **overrides: object) -> Path:
    return write_spec(folder, "Ray backend test: two rewards, two seeds, a tiny budget.",
                      **{"budget": {"steps": 1024}, **overrides})


_cli = cli


def _env() -> dict[str, str]:
    env = cli_env()
    env.pop(TMPDIR_VAR, None)  # Ray's temp files in their default place, checked below
    env.pop("RAY_ADDRESS", None)  # a local cluster
    return env


_trials = read_trials


def _sigint_as_from_a_terminal() -> None:
    """In the child before exec: Ctrl-C at its default, as a terminal's foreground command has it. A suite
    started in the background by a non-interactive shell inherits SIGINT *ignored* (POSIX), and so would
    the run, which then rightly ignores the test's Ctrl-C (the cause of this test's earlier failures)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_status(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        (status,) = conn.execute("SELECT status FROM runs").fetchone()
    return status


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (Linux /proc), with its command line."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


def _ray_workers(pid: int) -> dict[int, str]:
    """The Ray worker processes of the cluster a driver ``pid`` started (they train, and write trials)."""
    return {p: cmd for p, cmd in _descendants(pid).items()
            if (cmd.startswith("ray::") or "default_worker.py" in cmd) and not cmd.startswith(RAY_AGENTS)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _session(pid: int) -> Path | None:
    """The Ray session folder a driver ``pid`` made in the documented temp folder."""
    found = list(RAY_TMP.glob(f"session_*_{pid}"))
    return found[0] if found else None


def _nothing_ray_in(cwd: Path, expected: set[str]) -> None:
    """Nothing but ``expected`` in the working directory, and nothing Ray-ish anywhere below it."""
    assert {p.name for p in cwd.iterdir()} <= expected, sorted(p.name for p in cwd.iterdir())
    rayish = [p for p in cwd.rglob("*") if "ray" in p.name.lower() or p.name.startswith("session_")]
    assert not rayish, rayish


WaitFor = Callable[[subprocess.Popen, Path, str, Callable[[], bool], float], bool]


@pytest.fixture
def wait_for() -> Iterator[WaitFor]:
    """``wait_for(proc, log, what, condition, seconds)``: poll until condition() is true while ``proc`` runs."""

    def wait(proc: subprocess.Popen, log: Path, what: str, condition: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            assert proc.poll() is None, f"the run ended before {what}: " + log.read_text()
            assert time.monotonic() < deadline, f"not {what} within {seconds:.0f} s: " + log.read_text()
            value = condition()
            if value:
                return value
            time.sleep(0.1)

    yield wait


def _rows(db: Path) -> list[dict]:
    if not db.is_file():
        return []
    try:
        return _trials(db)
    except sqlite3.OperationalError:  # the schema is not created yet
        return []


# -- without a cluster -------------------------------------------------------------------------------------
def test_check_ray_says_how_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError, match=r"^the ray backend needs the ray extra: pip install 'rewardlab\[ray\]'$"):
        check_ray()


def test_ray_temp_dir_is_documented_and_short(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TMPDIR_VAR, raising=False)
    assert ray_temp_dir() == RAY_TMP
    monkeypatch.setenv(TMPDIR_VAR, str(tmp_path / ("deep" * 10)))
    with pytest.raises(UserError, match=f"too long for its unix sockets.*set {TMPDIR_VAR}"):
        ray_temp_dir()


def test_the_watch_in_a_task_ends_its_worker_when_the_runner_is_gone(tmp_path: Path) -> None:
    """The second guard against orphans, without Ray: a process running the watch on a stand-in runner
    exits within a second of the stand-in's death."""
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen([sys.executable, "-c", (
        "import sys, threading, time\n"
        "from rewardlab.runs.backends.ray import _exit_when_gone\n"
        f"threading.Thread(target=_exit_when_gone, args=({runner.pid},), daemon=True).start()\n"
        "print('watching', flush=True)\n"
        "time.sleep(60)\n")], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "watching"
        time.sleep(0.5)
        assert worker.poll() is None  # the runner lives: the worker goes on
        runner.kill()  # (left a zombie until reaped: the watch counts that as gone)
        start = time.monotonic()
        assert worker.wait(timeout=5) == 1
        assert time.monotonic() - start < 2.0
    finally:
        for proc in (runner, worker):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


# -- with a real local cluster ---------------------------------------------------------------------------
@needs_ray
@pytest.mark.slow
def test_cli_run_on_a_local_ray_cluster(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.Popen(_cli("run", str(spec), "--out", str(out), "--backend", "ray"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    trials = _trials(out / "rewardlab.sqlite")
    assert len(trials) == 4 and all(t["status"] == "done" for t in trials), trials
    assert _run_status(out / "rewardlab.sqlite") == "done"
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert "| env | ppo | 2 |" in (run_dir / "report.md").read_text()
    assert all((Path(t["dir"]) / "result.json").is_file() for t in trials)
    # Ray's files went to the documented folder: a session of this driver, with the workers' logs
    session = _session(proc.pid)
    assert session is not None and list((session / "logs").glob("worker-*")), list(RAY_TMP.iterdir())
    assert not list(Path("/tmp/ray").glob(f"session_*_{proc.pid}"))  # not Ray's default
    _nothing_ray_in(tmp_path, {"tiny.yaml", "runs"})
    assert {p.name for p in out.iterdir()} <= {"rewardlab.sqlite", "rewardlab.sqlite-wal", "rewardlab.sqlite-shm",
                                               run_dir.name}


def _done_or_die_on_seed_1(task: TrialTask) -> TrialOutcome:
    """Stand-in for training, in a Ray worker: seed 1 kills its worker, the others finish at once."""
    if task.config.seed == 1:
        os._exit(3)
    time.sleep(0.5)
    curve = [CurvePoint(step=0, return_env=0.0), CurvePoint(step=task.config.budget.steps, return_env=1.0)]
    return TrialOutcome(result=TrialResult(curve=curve, steps=task.config.budget.steps, wall_s=0.5, algo="ppo"))


@needs_ray
@pytest.mark.slow
def test_a_dead_ray_worker_fails_only_its_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.cloudpickle
    from rich.console import Console

    from rewardlab.runs.backends.ray import RayBackend
    from rewardlab.runs.runner import run_experiment
    from rewardlab.store import RunStore

    monkeypatch.delenv(TMPDIR_VAR, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray's workers cannot import this test module (tests/ is not on their path): send the stand-in by value
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        spec = _write_spec(tmp_path, rewards=["env"], seeds=[0, 1, 2])
        console = Console(record=True, width=200)
        handlers: list[tuple[Any, Any]] = []

        def make_backend(n: int) -> RayBackend:
            before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
            backend = RayBackend(n, work=_done_or_die_on_seed_1)
            handlers.append((before, (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))))
            return backend

        summary = run_experiment(spec, out=tmp_path / "runs", console=console, make_backend=make_backend)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert not ray.is_initialized()  # the backend shut its local cluster down
    # ray.init installs a SIGTERM handler of its own (sys.exit): it must not replace the one in place (the
    # runner's own, installed while the run goes on, turns SIGTERM into an 'interrupted' run)
    ((before, after),) = handlers
    assert after == before, handlers
    with RunStore(tmp_path / "runs" / "rewardlab.sqlite") as store:
        by_seed = {t.seed: t for t in store.trials(summary.run_id)}
    assert by_seed[1].status == "failed", by_seed[1]
    assert "its Ray worker died (WorkerCrashedError" in (by_seed[1].error or ""), by_seed[1].error
    assert "\n" not in (by_seed[1].error or "")
    assert by_seed[0].status == by_seed[2].status == "done"
    assert summary.status == "failed" and (summary.counts["done"], summary.counts["failed"]) == (2, 1), summary
    assert "2 done, 1 failed" in console.export_text()


def _train_for_a_minute(task: TrialTask) -> TrialOutcome:
    """Stand-in for a long trial, in a Ray worker."""
    time.sleep(60)
    return TrialOutcome(error="not expected to finish")


@needs_ray
@pytest.mark.slow
def test_a_local_cluster_that_dies_under_the_run_stops_it_with_one_line(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its raylet, ray.wait never reports the running tasks again (or never returns): the backend
    notices and stops the run with one line instead of hanging."""
    import ray.cloudpickle
    from rich.console import Console

    from rewardlab.runs.backends.ray import RayBackend
    from rewardlab.runs.runner import run_experiment

    monkeypatch.delenv(TMPDIR_VAR, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    backends: list[RayBackend] = []

    def make_backend(n: int) -> RayBackend:
        backends.append(RayBackend(n, work=_train_for_a_minute))
        return backends[-1]

    def kill_the_raylet() -> None:
        deadline = time.monotonic() + 120
        while not (backends and backends[0].in_flight() == 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # the tasks running, the runner in ray.wait
        for pid, cmd in _descendants(os.getpid()).items():
            if "raylet/raylet" in cmd:
                os.kill(pid, signal.SIGKILL)

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    killer = threading.Thread(target=kill_the_raylet, daemon=True)
    killer.start()
    try:
        spec = _write_spec(tmp_path, rewards=["env"], seeds=[0, 1])
        with pytest.raises(UserError, match=r"^the local Ray cluster stopped: its raylet ended \(killed by SIGKILL\)"):
            run_experiment(spec, out=tmp_path / "runs", console=Console(quiet=True), make_backend=make_backend)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
        killer.join(timeout=5)
    assert not ray.is_initialized()
    db = tmp_path / "runs" / "rewardlab.sqlite"
    assert _run_status(db) == "failed"
    assert [t["status"] for t in _trials(db)] == ["pending", "pending"]  # to run again on --resume


@needs_ray
@pytest.mark.slow
def test_killed_ray_run_resumes_with_nothing_lost_or_repeated(tmp_path: Path, wait_for: WaitFor) -> None:
    spec = _write_spec(tmp_path)
    out = tmp_path / "runs"
    db = out / "rewardlab.sqlite"
    log_path = tmp_path / "first.log"
    workers: dict[int, str] = {}
    with log_path.open("w") as log:
        first = subprocess.Popen(_cli("run", str(spec), "--out", str(out), "--backend", "ray"), cwd=tmp_path,
                                 env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            def one_done() -> bool:
                workers.update(_ray_workers(first.pid))
                return any(t["status"] == "done" for t in _rows(db))

            wait_for(first, log_path, "a trial finished", one_done, 180)
            workers.update(_ray_workers(first.pid))
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
    before = {t["key"]: t for t in _trials(db)}
    assert len(before) == 4
    assert any(t["status"] != "done" for t in before.values()), "every trial finished before the kill"
    # No Ray worker of the killed run lives on to write into a trial directory the resumed run re-uses.
    assert workers, "no Ray worker process was seen"
    left = _wait_until_gone(list(workers), 10)
    assert not left, {p: workers[p] for p in left}
    trial_dirs = [Path(t["dir"]) for t in before.values() if t["dir"]]
    stamp = max((p.stat().st_mtime for d in trial_dirs if d.exists() for p in d.rglob("*")), default=0.0)
    time.sleep(1.0)
    assert max((p.stat().st_mtime for d in trial_dirs if d.exists() for p in d.rglob("*")), default=0.0) == stamp

    resumed = subprocess.run(_cli("run", str(spec), "--out", str(out), "--resume", "--backend", "ray"), cwd=tmp_path,
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming tiny-" in resumed.stdout and "Traceback" not in resumed.stdout + resumed.stderr
    after = {t["key"]: t for t in _trials(db)}
    assert sorted(after) == sorted(before)  # every trial exactly once (keys are unique per run)
    assert all(t["status"] == "done" for t in after.values()), after
    for key, t in before.items():
        if t["status"] == "done":  # finished before the kill: untouched
            assert (after[key]["started"], after[key]["finished"], after[key]["result_json"]) == (
                t["started"], t["finished"], t["result_json"])
        else:
            assert after[key]["started"] != t["started"]
    assert _run_status(db) == "done"
    _nothing_ray_in(tmp_path, {"tiny.yaml", "runs", "first.log"})


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize(("how", "reason"), [
    ("ctrl-c", "interrupted (Ctrl-C)"),
    ("sigterm", "was terminated (SIGTERM)"),
])
def test_ctrl_c_or_sigterm_stops_a_ray_run_cleanly(tmp_path: Path, wait_for: WaitFor, how: str,
                                                   reason: str) -> None:
    spec = _write_spec(tmp_path, budget={"steps": 50_000})  # long enough to be running when stopped
    out = tmp_path / "runs"
    db = out / "rewardlab.sqlite"
    log_path = tmp_path / "stdout.log"
    workers: dict[int, str] = {}
    with log_path.open("w") as log:
        # a session of its own, as a terminal gives a command: Ctrl-C goes to its whole process group
        proc = subprocess.Popen(_cli("run", str(spec), "--out", str(out), "--backend", "ray"), cwd=tmp_path,
                                env=_env(), stdout=log, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=_sigint_as_from_a_terminal)
        try:
            def running() -> bool:
                workers.update(_ray_workers(proc.pid))
                return len([t for t in _rows(db) if t["status"] == "running"]) == 2 and len(workers) >= 2

            wait_for(proc, log_path, "two trials were running", running, 180)
            time.sleep(3.0)  # into training, the runner in ray.wait
            workers.update(_ray_workers(proc.pid))
            if how == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)  # Ray's processes in the group get it too, as from a terminal
            else:
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=150)  # Ray shuts its workers down slowly on a loaded machine
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, stderr + log_path.read_text()
    assert "Traceback" not in stderr + log_path.read_text(), stderr
    message = " ".join(stderr.split())  # (the console may wrap the one line)
    assert message.startswith("interrupted: run tiny-") and f"{reason}; continue it with:" in message, stderr
    assert "--resume tiny-" in message and stderr.count("interrupted:") == 1, stderr
    assert _run_status(db) == "interrupted"
    assert not [t for t in _trials(db) if t["status"] == "running"]
    assert workers and not _wait_until_gone(list(workers), 10), workers
