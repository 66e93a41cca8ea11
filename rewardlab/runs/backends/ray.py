"""The Ray backend: every trial is one Ray task, on a local Ray cluster started for the run (the default)
or on an existing one (``--address``; Ray's ``RAY_ADDRESS`` counts as ``--address`` when it is set).

The runner stays the only writer of the store: tasks only train and return their
:class:`~rewardlab.runs.backends.base.TrialOutcome`. Each task asks for one CPU and is never retried
by Ray (``max_retries=0``): whether a trial runs again is the runner's decision (``--resume``).

**Ray's temp files** (sockets, session logs, the object store's spill files) go to
``$REWARDLAB_RAY_TMPDIR`` when set, else ``/tmp/ray-rewardlab-<uid>``: one ``session_<time>_<pid>``
folder per local cluster, whose ``logs/`` also hold the trials' printed output (``worker-*.out`` and
``.err``: it is not forwarded to the terminal, so it never breaks the progress bar). Not under the
run directory: Ray puts unix sockets in the session folder and a socket's path is limited to 107
bytes, which a run directory a few levels deep already exceeds (the folder must be at most 40 bytes);
not Ray's default ``/tmp/ray`` either, which is shared by every user of the machine and made
world-writable by Ray. Nothing is written to the current directory. When a local cluster starts,
session folders beyond the newest ten are removed, unless their driver process is still alive. An
existing cluster keeps its temp files on its own nodes, where it was started.

**A dead worker** (killed, out of memory, a crash in native code) fails only its own trial, with a
one-line error naming Ray's log folder; the other trials go on.

**A local cluster that dies under the run** (its raylet or GCS killed, e.g. by the out-of-memory
killer): ``ray.wait`` would never report the running tasks again, or not even return (observed with
Ray 2.60). The backend watches the two processes and stops the run with one line; its unfinished trials
run again on ``--resume``. (Not for an existing cluster, whose processes are not the runner's.)

**Stopping.** Ctrl-C or SIGTERM in the runner cancels the running tasks (``ray.cancel(force=True)``)
and shuts the local cluster down; an existing cluster is never shut down, only disconnected from. Ray's
processes do not see the terminal's Ctrl-C (they block SIGINT or run in process groups of their own).
While Ray's own code runs, the backend holds either signal and hands it to the runner's handler right
after: during ``ray.init`` (a cluster stopped half-way leaves Ray's agents behind) and ``ray.wait`` (at
most the runner's one-second poll: a handler raising anything but ``KeyboardInterrupt`` inside Ray's C++
core turns into a ``SystemError``); a second signal stops the call at once. The SIGTERM handler that
``ray.init`` installs (``sys.exit``) is kept out, so SIGTERM records the run ``interrupted``.

**A killed runner** (SIGKILL, a crash): the local cluster's GCS and raylet die with it at once (Ray
starts them with the kernel's parent-death signal), and its workers exit within about three seconds,
when they lose their raylet; Ray's dashboard and runtime-env agents linger for one to three minutes, but
they write no trial directory. As a second guard every task watches the runner's process and exits
within half a second of its end, so no worker keeps writing into a trial directory that a resumed run
re-uses. On an existing cluster the watch works for workers on the runner's machine, in its pid
namespace (process ids mean nothing on other machines or in other containers), ``ray://`` addresses
included; elsewhere Ray ends the job's workers when it notices the driver gone: at once, as observed,
for a driver connected to a node of the cluster, but only after the Ray Client's reconnect grace period
(30 s by default, ``RAY_CLIENT_RECONNECT_GRACE_PERIOD``) for a ``ray://`` driver on another machine,
so a run killed there is best resumed after that.

**Threads and devices.** Workers run with one BLAS/OpenMP/torch thread, like local workers:
``OMP_NUM_THREADS`` and the like are 1 before numpy or torch load (in the environment a local cluster
starts in; in the job's ``runtime_env`` on an existing cluster), and each task calls
:func:`~rewardlab.runtime.limit_threads`. Tasks ask for no GPU, so Ray hides GPUs from them. On an
existing cluster of several machines the runs folder must be on a file system every node sees at the
same path: trials write their directories where they run.

**Authentication.** Ray 2.60 protects a local cluster with a token, which Ray itself keeps in
``~/.ray/auth_token`` (made once, shared with the user's other Ray use; not a temp file). Ray sends it
to an address given explicitly only when ``RAY_AUTH_MODE=token`` is set, as a cluster of ``ray start``
then requires; the error for a refused connection says so.

``ray`` is an optional dependency (``pip install 'rewardlab[ray]'``); it is imported only when this
backend is used.
"""

from __future__ import annotations

import _thread
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rewardlab.errors import UserError, one_line
from rewardlab.runs.backends.base import TrialOutcome, TrialTask, describe_error, run_trial_task
from rewardlab.runs.backends.local import _single_threaded_env
from rewardlab.runtime import THREAD_VARS

Work = Callable[[TrialTask], TrialOutcome]

#: Environment variable naming the folder for Ray's temp files (default ``/tmp/ray-rewardlab-<uid>``).
TMPDIR_VAR = "REWARDLAB_RAY_TMPDIR"
#: Longest temp folder (bytes) whose session sockets stay within the 107-byte unix socket path limit:
#: ``<folder>/session_<date>_<time>_<us>_<pid>/sockets/plasma_store`` adds up to 63 bytes.
MAX_TMPDIR_BYTES = 40
#: Session folders kept in the temp folder (besides those of live drivers).
KEEP_SESSIONS = 10
#: How often a task checks that the runner is still alive, and the runner its local cluster (seconds).
WATCH_S = 0.5
GUARD_S = 0.5
INSTALL_HINT = "the ray backend needs the ray extra: pip install 'rewardlab[ray]'"


def check_ray() -> None:
    """Fail with one line when Ray cannot be imported.

    :raises UserError: ``ray`` is not installed (or is broken)
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    except Exception as e:  # a broken installation: say what, and how to repair it
        raise UserError(f"ray could not be imported ({describe_error(e)}); {INSTALL_HINT}") from None


def ray_temp_dir() -> Path:
    """The folder for a local cluster's temp files: ``$REWARDLAB_RAY_TMPDIR``, else
    ``/tmp/ray-rewardlab-<uid>`` (see the module docstring for why).

    :raises UserError: the folder's path is too long for Ray's unix sockets
    """
    configured = os.environ.get(TMPDIR_VAR)
    if configured:
        folder = Path(configured).expanduser().absolute()
    else:
        # /tmp and not tempfile.gettempdir(): macOS's $TMPDIR alone is longer than the sockets allow
        base = Path("/tmp") if os.name == "posix" else Path(tempfile.gettempdir())
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        folder = base / f"ray-rewardlab-{user}"
    if len(os.fsencode(str(folder))) > MAX_TMPDIR_BYTES:
        raise UserError(f"Ray's temp folder {str(folder)!r} is too long for its unix sockets (at most "
                        f"{MAX_TMPDIR_BYTES} bytes); set {TMPDIR_VAR} to a shorter folder")
    return folder


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill's answer stands
    return state != "Z"  # killed but not yet reaped by its parent: gone for our purposes


def _prune_sessions(folder: Path, keep: int = KEEP_SESSIONS) -> None:
    """Remove session folders beyond the newest ``keep``, except those of live drivers (another run may
    be using one: the driver's pid ends the folder's name)."""
    sessions = sorted(p for p in folder.glob("session_*") if p.is_dir() and not p.is_symlink())
    for old in sessions[:-keep] if keep else sessions:
        pid = old.name.rsplit("_", 1)[-1]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        shutil.rmtree(old, ignore_errors=True)


# -- in the Ray worker ------------------------------------------------------------------------------------
_watched_pid: int | None = None


def _exit_when_gone(pid: int) -> None:
    while _pid_alive(pid):
        time.sleep(WATCH_S)
    os._exit(1)  # the runner is gone: stop writing into the trial's directory at once


def _pid_space() -> str | None:
    """Which process ids this process sees: the kernel's boot id and the pid namespace (Linux); equal for
    two processes exactly when a pid means the same process to both. None without /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


@dataclass(frozen=True)
class _Driver:
    """The runner, for the watch in the tasks: its pid, and where that pid means it.

    :param pid_space: see :func:`_pid_space`
    :param node_id: the runner's Ray node, when it has one (not for a Ray Client driver); compared only
        without ``pid_space`` (no /proc)
    """

    pid: int
    pid_space: str | None
    node_id: str | None


def _watch_driver(driver: _Driver) -> None:
    """Once per worker process: exit when the runner's process ends, if its pid means the same process
    here (same machine and pid namespace); elsewhere it means nothing."""
    global _watched_pid
    if _watched_pid == driver.pid:
        return
    if driver.pid_space is not None:
        if _pid_space() != driver.pid_space:
            return
    else:
        import ray

        if driver.node_id is None or ray.get_runtime_context().get_node_id() != driver.node_id:
            return
    _watched_pid = driver.pid
    threading.Thread(target=_exit_when_gone, args=(driver.pid,), daemon=True, name="runner-watch").start()


def _run_in_worker(task: TrialTask, work: Work, driver: _Driver) -> TrialOutcome:
    """One trial in a Ray worker (the remote function; module-level so it is pickled by name).

    :param driver: the runner, to exit when it is gone
    """
    _watch_driver(driver)
    from rewardlab.runtime import limit_threads

    limit_threads()  # also in run_trial_task; here for any ``work``
    return work(task)


# -- in the runner --------------------------------------------------------------------------------------
#: What stops a run (SIGHUP: its terminal closed); held during Ray's calls, delivered after them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_held(break_out: Callable[[], bool] = lambda: False) -> Iterator[Callable[[], None]]:
    """Hold Ctrl-C and SIGTERM during a Ray call, and yield a function that delivers the first one
    afterwards, to the handler it was meant for (the runner's).

    Why: a handler that raises anything but ``KeyboardInterrupt`` while Ray's C++ core checks for signals
    (``ray.wait``) comes out as ``SystemError: ... returned a result with an exception set`` (the runner's
    SIGTERM handler raises its own error), and ``ray.init`` stopped half-way leaves Ray's agents running
    for minutes. A second signal, or one while ``break_out()`` is true, ends the call at once with
    ``KeyboardInterrupt``, which Ray passes through cleanly; a second signal then reaches the runner as
    the first one would have (a call that hangs can still be stopped).

    :param break_out: when true, a signal ends the call (the caller turns the ``KeyboardInterrupt`` into
        its own error)
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def deliver(signum: int) -> None:
        handler = saved[signal.Signals(signum)]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def hold(signum: int, frame: Any) -> None:
        if break_out():
            raise KeyboardInterrupt
        pending.append(signum)
        if len(pending) > 1:
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, hold)
    try:
        yield lambda: deliver(pending[0]) if pending else None
    except KeyboardInterrupt:
        if len(pending) > 1:
            deliver(pending[0])
        raise
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextmanager
def _without_ray_sigterm_handlers() -> Iterator[None]:
    """Keep ``ray.init`` (and the node it starts) from installing SIGTERM handlers that end the process
    with ``sys.exit``: a private hook of Ray's; without it, if a Ray version lacks it,
    :func:`_stop_signals_held` still puts the runner's handlers back afterwards."""
    try:
        import ray._private.utils as ray_utils
    except ImportError:
        yield
        return
    installer = getattr(ray_utils, "set_sigterm_handler", None)
    if installer is None:
        yield
        return
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = installer


def _drop_stdstream(data: Any, ignore_prefix: bool = False) -> None:
    """Stands in for Ray's ``print_to_stdstream`` in the driver: drops the messages Ray pushes from the
    cluster (a worker that died, with ids and ports), which would break the progress bar; the trial's
    one line says it, and the raylet's log in the session folder keeps the full message."""


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while Ray stops: a stop is under way, and a second signal must not leave
    the cluster half-stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


class RayBackend:
    """Trials as Ray tasks, at most ``capacity`` at a time (the runner sees to that).

    :param capacity: trials in parallel; a local cluster gets this many CPUs
    :param address: an existing cluster (``host:port``, ``auto``, ``ray://host:port``); default
        ``$RAY_ADDRESS`` or else a local cluster started here and shut down by :meth:`shutdown`
    :param out: the runs folder (not used for Ray's temp files: see the module docstring)
    :param work: what a task runs per trial (a module-level function, or one Ray can pickle)
    :raises UserError: Ray could not start, or the cluster could not be reached (one line)
    """

    name = "ray"

    def __init__(self, capacity: int, address: str | None = None, out: Path = Path("runs"),
                 work: Work = run_trial_task):
        check_ray()
        import ray

        self.capacity = capacity
        self.work = work
        self.out = out
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.temp_dir: Path | None = None  # the local cluster's temp folder
        self.session_dir: Path | None = None  # its session folder (None: not known, an existing cluster)
        self._owns_connection = False  # this backend called ray.init (and so calls ray.shutdown)
        self._closed = False
        self._refs: dict[Any, TrialTask] = {}
        self._held: Callable[[], None] | None = None  # a signal to deliver at the next call
        self._guarded: list[tuple[str, Any]] = []  # the local cluster's raylet and GCS (name, Popen)
        self._broken: str | None = None  # how the local cluster stopped under the run
        self._in_wait = False  # the runner is in ray.wait (the guard may break it off)
        self._guard_lock = threading.Lock()
        if not ray.is_initialized():  # (already initialized: a caller's connection, used as it is)
            self._init()
        # (a Ray Client driver has no node of its own: the one it reports is the server's)
        client = self.address is not None and self.address.startswith("ray://")
        node = None if client else ray.get_runtime_context().get_node_id()
        self._driver = _Driver(os.getpid(), _pid_space(), node)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_run_in_worker)

    def _init(self) -> None:
        import ray

        # No usage-stats report to Ray's servers from a training run (and no network wait without one).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options: dict[str, Any] = {
            "logging_level": logging.ERROR,
            "log_to_driver": False,  # trial output stays in Ray's worker logs, not over the progress bar
        }
        if self.address is not None:
            # the job's workers start with one BLAS/OpenMP thread, like local workers (numpy loads early);
            # a local cluster's workers inherit it from the environment its raylet starts in (see below),
            # which spares the workers Ray restarts for a job's runtime_env (2-3 s)
            options["runtime_env"] = {"env_vars": {name: "1" for name in THREAD_VARS}}
        else:
            self.temp_dir = ray_temp_dir()
            try:
                self.temp_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create Ray's temp folder {self.temp_dir} ({describe_error(e)}); "
                                f"set {TMPDIR_VAR} to another folder") from None
            _prune_sessions(self.temp_dir)
            options.update(num_cpus=self.capacity, num_gpus=0, include_dashboard=False,
                           _temp_dir=str(self.temp_dir))
        self._quiet_cluster_messages()
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
        # Ray never sends its token to an address given explicitly unless told to; a cluster of `ray start`
        # with token authentication (the default once a token exists) then refuses the connection
        hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token (the token: ~/.ray/auth_token "
                "or RAY_AUTH_TOKEN)") if self.address and os.environ.get("RAY_AUTH_MODE") is None else ""
        try:
            with (_without_ray_sigterm_handlers(), _single_threaded_env(), warnings.catch_warnings(),
                  _stop_signals_held() as deliver_held):
                # (e.g. the Ray Client's "connection timed out" warning: the one-line error below says it)
                warnings.filterwarnings("ignore", module=r"ray(\.|$)")
                ray.init(address=self.address, **options)
        except BaseException as e:
            self._close_quietly()  # a partly started local cluster (or a second Ctrl-C during the start)
            if isinstance(e, Exception) and not isinstance(e, UserError):
                verb = "reach" if self.address else "start"
                raise UserError(f"cannot {verb} {where}: {one_line(str(e), 200) or type(e).__name__}{hint}") from None
            raise
        self._owns_connection = True
        try:
            deliver_held()  # a Ctrl-C or SIGTERM held while Ray started: raised now, and the cluster stops
        except BaseException:
            self._close_quietly()
            raise
        if self.address is None:
            try:  # (a private attribute of Ray's: without it, no log folder in errors and no guard)
                node: Any = ray._private.worker._global_node
                self.session_dir = Path(node.get_session_dir_path())
                self._guarded = [(name, info.process) for name in ("raylet", "gcs_server")
                                 for info in node.all_processes.get(name, [])]
            except Exception:
                self.session_dir = None
            # (it breaks ray.wait off with a SIGINT to the main thread: only for a runner in the main thread)
            if self._guarded and threading.current_thread() is threading.main_thread():
                threading.Thread(target=self._guard, daemon=True, name="ray-cluster-guard").start()

    def _cluster_death(self) -> str | None:
        """How the local cluster's raylet or GCS ended, if one did (they are this process's children)."""
        for name, process in self._guarded:
            code = process.poll()
            if code is not None:
                try:
                    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                except ValueError:
                    how = f"killed by signal {-code}"
                return f"its {name} ended ({how})"
        return None

    def _guard(self) -> None:
        """Watch the local cluster while the run lasts. Without its raylet, ``ray.wait`` never reports the
        running tasks again, and may not even return (observed with Ray 2.60): break it off then."""
        broken_off = False
        while not self._closed:
            if self._broken is None:
                self._broken = self._cluster_death()
            with self._guard_lock:
                if self._broken is not None and self._in_wait and not broken_off and not self._closed:
                    broken_off = True
                    _thread.interrupt_main()  # a SIGINT to the main thread, turned into the error by wait()
            time.sleep(GUARD_S)

    def _check_cluster(self) -> None:
        """:raises UserError: the local cluster stopped under the run"""
        if self._broken is None and not self._closed:
            self._broken = self._cluster_death()
        if self._broken is not None:
            logs = f"; Ray's logs: {self.session_dir / 'logs'}" if self.session_dir is not None else ""
            raise UserError(f"the local Ray cluster stopped: {self._broken} (e.g. out of memory){logs}; "
                            "the run can be resumed (--resume)")

    _printer: Any = None  # Ray's print_to_stdstream while replaced by _drop_stdstream

    def _quiet_cluster_messages(self) -> None:
        """Keep the cluster's error messages off the terminal (a private hook of Ray's driver: its
        error listener prints them to stderr even with ``log_to_driver=False``; without the hook, if a
        Ray version lacks it, they are only printed)."""
        try:
            import ray._private.worker as ray_worker
        except ImportError:
            return
        printer = getattr(ray_worker, "print_to_stdstream", None)
        if printer is not None and printer is not _drop_stdstream:
            RayBackend._printer = printer
            ray_worker.print_to_stdstream = _drop_stdstream

    def _close_quietly(self) -> None:
        import ray

        try:
            with _stop_signals_ignored():
                ray.shutdown()
        except Exception:
            pass
        if RayBackend._printer is not None:  # the process may connect to Ray again, with its own settings
            import ray._private.worker as ray_worker

            ray_worker.print_to_stdstream = RayBackend._printer
            RayBackend._printer = None

    def _deliver_held(self) -> None:
        """Deliver a Ctrl-C or SIGTERM held during the previous call, now that the runner has recorded
        what that call returned."""
        deliver, self._held = self._held, None
        if deliver is not None:
            deliver()

    def submit(self, task: TrialTask) -> None:
        self._deliver_held()
        self._check_cluster()
        # absolute: a Ray worker's working directory need not be the runner's
        sent = replace(task, trial_dir=os.path.abspath(task.trial_dir))
        with _stop_signals_held() as deliver_held:
            self._refs[self._remote.remote(sent, self.work, self._driver)] = task
        deliver_held()  # the task is in flight: a stop cancels it

    def in_flight(self) -> int:
        return len(self._refs)

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        self._deliver_held()
        self._check_cluster()
        if not self._refs:
            return []
        import ray

        try:
            # (see _stop_signals_held: ray.wait and signal handlers)
            with _stop_signals_held(break_out=lambda: self._broken is not None) as deliver_held:
                # The guard breaks ray.wait off only while this flag is set, under the lock: the SIGINT it
                # sends is then handled before the hold above ends, never by the runner's handler.
                with self._guard_lock:
                    self._in_wait = True
                try:
                    ready, rest = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
                    if ready and rest:  # whatever else finished meanwhile, without waiting again
                        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                        ready += more
                    done = [(self._refs.pop(ref), self._outcome(ref)) for ref in ready]
                finally:
                    with self._guard_lock:
                        self._in_wait = False
        except KeyboardInterrupt:
            self._check_cluster()  # broken off by the guard: say why
            raise
        if done:
            self._held = deliver_held  # delivered at the next call: these outcomes get recorded first
        else:
            deliver_held()
        return done

    def _outcome(self, ref: Any) -> TrialOutcome:
        """A finished task's outcome; Ray's errors become the trial's one line."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            value = ray.get(ref)
        except RayTaskError as e:  # the task's code raised (``run_trial_task`` never does; other work may)
            cause = e.cause if isinstance(e.cause, BaseException) else None
            what = describe_error(cause) if cause is not None else one_line(str(e).splitlines()[0] if str(e) else "")
            return TrialOutcome(error=f"the trial's Ray task raised {what}")
        except RayError as e:  # the worker died (killed, out of memory, a native crash) or the task was cancelled
            return TrialOutcome(error=self._death(e))
        if not isinstance(value, TrialOutcome):
            return TrialOutcome(error=f"the trial's Ray task returned a {type(value).__name__}, not an outcome")
        return value

    def _death(self, error: BaseException) -> str:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        what = type(error).__name__ + (f": {one_line(lines[0], 120)}" if lines else "")
        logs = f"; Ray's logs: {self.session_dir / 'logs'}" if self.session_dir is not None else ""
        return one_line(f"its Ray worker died ({what}; e.g. killed, out of memory, or a crash in native code){logs}")

    def shutdown(self, cancel: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        import ray

        held, self._held = self._held, None
        with _stop_signals_ignored():
            if cancel:
                for ref in list(self._refs):
                    try:
                        ray.cancel(ref, force=True)  # kills the task's worker; on an existing cluster too
                    except Exception:
                        pass  # already finished, or the cluster is gone: nothing left to stop
            self._refs.clear()
        if self._owns_connection:  # a local cluster stops; an existing one is only disconnected from
            self._close_quietly()
        if held is not None and not cancel:  # a stop asked for as the last trial finished: still a stop
            held()
