"""The local backend: trials in worker processes on this machine, one thread each.

Each worker is a ``spawn``-ed process of its own with a pipe to the runner: it takes a task, trains,
sends the outcome back, and takes the next. A worker that dies (killed, out of memory, a crash in
native code) fails only the trial it was running; the runner's next trial gets a fresh worker. Workers
ignore Ctrl-C (the runner decides what stops) and exit by themselves when the runner's process is
gone, so no orphan keeps writing into a trial directory that a resumed run re-uses.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from rewardlab.runs.backends.base import TrialOutcome, TrialTask, run_trial_task
from rewardlab.runtime import THREAD_VARS

Work = Callable[[TrialTask], TrialOutcome]


@contextmanager
def _single_threaded_env() -> Iterator[None]:
    """Thread-count variables at 1 while workers are spawned (numpy and torch read them at import),
    and the caller's environment restored afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARS}
    os.environ.update({name: "1" for name in THREAD_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: Signals that stop a run: held while a worker is started (see :func:`_stop_signals_held`).
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold stop signals while a worker starts, and deliver them after: a stop raised half-way through
    writing a spawned child's start-up data leaves the child reading a cut pipe, and it prints
    multiprocessing's traceback over the run's one-line message. The handlers are swapped for ones that
    only note the signal (a blocked signal mask would not do: the kernel hands a process-directed signal
    to any other thread, the runner's heartbeat for one, and Python then runs the handler at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)


def _worker_main(conn: Connection, parent_pid: int, work: Work) -> None:
    """A worker's life: one thread for torch, no reaction to Ctrl-C, tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rewardlab.runtime import limit_threads, one_line_warnings

    limit_threads()
    one_line_warnings()  # a per-env program's compat-mode warning once per worker, as one line
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        outcome = work(task)
        try:
            conn.send(outcome)
        except Exception as e:  # an outcome that cannot be pickled back
            conn.send(TrialOutcome(error=f"the trial's result could not be sent back: {type(e).__name__}: {e}"))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    task: TrialTask | None = None


def _death(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    return f"its worker process died ({how}; e.g. killed, out of memory, or a crash in native code)"


class LocalBackend:
    """Trials in up to ``capacity`` worker processes on this machine.

    :param capacity: worker processes
    :param work: what a worker runs per task (a module-level function: it is pickled by name)
    """

    name = "local"

    def __init__(self, capacity: int, work: Work = run_trial_task):
        self.capacity = capacity
        self.work = work
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def _start_worker(self) -> _Worker:
        ours, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(theirs, os.getpid(), self.work), daemon=True,
                                    name="rewardlab-worker")
        with _single_threaded_env(), _stop_signals_held():
            process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def submit(self, task: TrialTask) -> None:
        idle = next((w for w in self._workers if w.task is None and w.process.is_alive()), None)
        worker = idle or self._start_worker()
        worker.task = task
        try:
            worker.conn.send(task)
        except (BrokenPipeError, OSError):  # it died between is_alive() and send(): report it in wait()
            pass

    def in_flight(self) -> int:
        return sum(w.task is not None for w in self._workers)

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        handles: list[object] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout))  # type: ignore[arg-type]
        done: list[tuple[TrialTask, TrialOutcome]] = []
        for w in busy:
            if w.conn not in ready and w.process.sentinel not in ready:
                continue
            task = w.task
            assert task is not None
            outcome: TrialOutcome | None = None
            try:
                if w.conn.poll():
                    outcome = w.conn.recv()
            except (EOFError, OSError):
                outcome = None
            if outcome is None:  # no message: the process is gone
                w.process.join(timeout=5)
                outcome = TrialOutcome(error=_death(w.process))
                self._retire(w)
            w.task = None
            done.append((task, outcome))
        return done

    def _retire(self, worker: _Worker) -> None:
        worker.conn.close()
        if worker in self._workers:
            self._workers.remove(worker)

    def shutdown(self, cancel: bool = False) -> None:
        for w in list(self._workers):
            if w.task is None or not cancel:
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for w in list(self._workers):
            if w.task is not None and cancel:
                w.process.terminate()
            w.process.join(timeout=10 if not cancel else 5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            self._retire(w)
