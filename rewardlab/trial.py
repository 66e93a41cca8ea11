"""The sandbox trial: a reward program run in a separate, resource-limited process on sampled states.

The third line of defence of :mod:`rewardlab.sandbox`: even a program that passed the static policy
runs first in a child process with CPU-time, memory, file-size, open-file and wall-clock limits, no
environment variables, an empty working directory, and Python's isolated mode. The child checks every
output (shape, dtype, finiteness), measures the cost of one batched call, and prints one JSON line.

:func:`start_trial` starts the child before the caller has its states, so its interpreter and imports
(about half a second) overlap the caller's state sampling; :func:`run_trial` does both steps at once.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from rewardlab.errors import RewardProgramError, one_line
from rewardlab.runtime import THREAD_VARS

#: Batched calls timed in the child to measure a program's cost per call (after one warm-up call).
COST_REPEATS = 5


@dataclass
class TrialLimits:
    """Resource limits of one sandbox trial.

    :param cpu_s: CPU seconds (RLIMIT_CPU); the process is killed past it
    :param memory_mb: address space (RLIMIT_AS)
    :param wall_s: wall-clock timeout
    """

    cpu_s: int = 10
    memory_mb: int = 1024
    wall_s: float = 20.0


@dataclass
class TrialReport:
    """Outcome of a sandbox trial.

    :param ok: the program ran on every state and every output passed the checks
    :param mode: ``batched`` or ``scalar`` (the per-env compat loop)
    :param rule: the rule that rejected it (``output``, ``non-finite``, ``timeout``, ...)
    :param seconds: wall-clock seconds of the whole trial, process start included
    :param total: statistics (mean, std, min, max) of the total over the states
    :param components: the same per component
    :param us_per_call: microseconds of one call on the whole batch (median of :data:`COST_REPEATS`)
    :param batch: states per call
    """

    ok: bool
    mode: str = ""
    rule: str = ""
    message: str = ""
    line: int | None = None
    seconds: float = 0.0
    total: dict[str, float] = field(default_factory=dict)
    components: dict[str, dict[str, float]] = field(default_factory=dict)
    us_per_call: float | None = None
    batch: int = 0

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise RewardProgramError(self.rule, self.message, self.line)


def _limit_child(limits: TrialLimits) -> None:
    os.setsid()  # own process group, so a timeout kills everything it started
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow: nothing is written
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class PendingTrial:
    """A started trial process waiting for its payload (see :func:`start_trial`)."""

    def __init__(self, limits: TrialLimits, workdir: Path | None = None):
        self.limits = limits
        self._tmp = tempfile.TemporaryDirectory(prefix="rewardlab-trial-", dir=workdir)
        self.start = time.perf_counter()
        # nothing of the caller's environment but PATH; one BLAS/OpenMP thread
        env = {**dict.fromkeys(THREAD_VARS, "1"), "PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", "from rewardlab.trial import _trial_main; _trial_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self._tmp.name, env=env,
            preexec_fn=lambda: _limit_child(limits),  # noqa: PLW1509 - rlimits must be set in the child
        )

    def run(self, source: str, card_json: str, states: np.ndarray, actions: np.ndarray,
            obs: np.ndarray | None = None) -> TrialReport:
        """Send the program and the states; wait for the verdict (at most the wall-clock limit)."""
        buf = io.BytesIO()
        arrays = {"states": states, "actions": actions}
        if obs is not None:
            arrays["obs"] = obs
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        header = json.dumps({"source": source, "card": card_json}).encode()
        payload = len(header).to_bytes(8, "little") + header + buf.getvalue()
        try:
            return self._finish(payload)
        finally:
            self._tmp.cleanup()

    def cancel(self) -> None:
        """Stop the child without running anything (the caller failed before sending a payload)."""
        self._kill()
        self.proc.communicate()
        self._tmp.cleanup()

    def _kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile
            pass

    def _finish(self, payload: bytes) -> TrialReport:
        limits = self.limits
        # the wall-clock limit counts from now: the child's start overlapped the caller's sampling
        begin = time.perf_counter()
        try:
            out, err = self.proc.communicate(payload, timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.communicate()
            return TrialReport(False, rule="timeout", message=f"the program ran past the {limits.wall_s:g} s wall-clock limit",
                               seconds=time.perf_counter() - begin)
        seconds = time.perf_counter() - self.start
        code = self.proc.returncode
        if code == -signal.SIGXCPU:
            return TrialReport(False, rule="cpu-time", message=f"the program used more than {limits.cpu_s} s of CPU time",
                               seconds=seconds)
        if code == -signal.SIGKILL:
            return TrialReport(False, rule="killed", message=f"the trial process was killed (past {limits.cpu_s + 1} s of "
                               f"CPU time or out of {limits.memory_mb} MB of memory)", seconds=seconds)
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
            keep = ("ok", "mode", "rule", "message", "line", "total", "components", "us_per_call", "batch")
            report = TrialReport(**{k: result[k] for k in keep if k in result}, seconds=seconds)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {code}"]
            return TrialReport(False, rule="crash", message=f"the trial process died: {one_line(tail[0])}", seconds=seconds)
        if code != 0 and report.ok:
            return TrialReport(False, rule="crash", message=f"the trial process exited with code {code}", seconds=seconds)
        return report


def start_trial(limits: TrialLimits | None = None, workdir: Path | None = None) -> PendingTrial:
    """Start a trial process now; give it the program and states later with :meth:`PendingTrial.run`.

    :param limits: resource limits
    :param workdir: where the child's empty working directory is made (default: the temp folder)
    """
    return PendingTrial(limits or TrialLimits(), workdir)


def run_trial(
    source: str,
    card_json: str,
    states: np.ndarray,
    actions: np.ndarray,
    obs: np.ndarray | None = None,
    limits: TrialLimits | None = None,
    workdir: Path | None = None,
) -> TrialReport:
    """Run a program on sampled states in a separate, limited process.

    :param source: the program source (checked statically again in the child)
    :param card_json: the env card as JSON (the child builds the state view from it)
    :param states: flat states ``(N, D)`` from :class:`~rewardlab.state.StateExtractor`
    :param actions: actions ``(N, A)``
    :param obs: raw observations ``(N, O)``, for compat-mode programs that take ``obs``
    :param limits: resource limits
    :param workdir: the parent of the child's empty working directory
    """
    return start_trial(limits, workdir).run(source, card_json, states, actions, obs)


def _read_payload(stream: IO[bytes]) -> tuple[dict[str, Any], Any]:
    raw = stream.read()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), np.load(io.BytesIO(raw[8 + n :]))


def _trial_main() -> None:
    """Entry point of the trial process: import first (this overlaps the parent's sampling), then read
    the payload from stdin and print one JSON line."""
    sys.setrecursionlimit(1000)
    from rewardlab.cards import EnvCard
    from rewardlab.program import RewardProgram, _runtime_error
    from rewardlab.state import StateExtractor

    header, data = _read_payload(sys.stdin.buffer)
    try:
        card = EnvCard.model_validate_json(header["card"])
        extractor = StateExtractor(card)
        program = RewardProgram(header["source"])
        reward = program.bind(card, strict_slices=True)
        obs = data["obs"] if "obs" in data.files else None
        states, actions = data["states"], data["actions"]
        # a single-env call first (cheap failures), then the whole batch
        reward(extractor.view(states[:1].copy(), None if obs is None else obs[:1]), actions[:1])
        view = extractor.view(states.copy(), obs)
        total, comps = reward(view, actions)
        times = []
        for _ in range(COST_REPEATS):
            start = time.perf_counter()
            reward(view, actions)
            times.append(time.perf_counter() - start)
            if sum(times) > 1.0:  # a slow program is measured enough; the wall-clock limit is for it
                break

        def stats(a: Any) -> dict[str, float]:
            return {"mean": float(np.mean(a)), "std": float(np.std(a)), "min": float(np.min(a)), "max": float(np.max(a))}

        print(json.dumps({"ok": True, "mode": reward.mode, "total": stats(total),
                          "components": {k: stats(v) for k, v in comps.items()},
                          "us_per_call": 1e6 * float(np.median(times)), "batch": int(states.shape[0])}))
    except RewardProgramError as e:
        print(json.dumps({"ok": False, "rule": e.rule, "message": one_line(e.message, 1000), "line": e.line}))
    except (MemoryError, RecursionError) as e:
        line = _runtime_error(e).line
        rule, message = ("memory", "the program ran out of its memory limit") if isinstance(e, MemoryError) else (
            "recursion", "maximum recursion depth exceeded")
        print(json.dumps({"ok": False, "rule": rule, "message": message, "line": line}))
    sys.stdout.flush()
