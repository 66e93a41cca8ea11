"""One training trial as a picklable task, its outcome, and the interface of what runs tasks
somewhere (a backend: local worker processes or Ray tasks, in :mod:`rewardlab.runs.backends`).

The experiment runner and the generation loop's probes hand tasks to a backend; the caller is the only
process that writes the store, backends only run :func:`run_trial_task` and report each outcome as it
arrives. This sits with the trainers (below the generation loop and the runner, which both use it).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rewardlab.config import TrainConfig
from rewardlab.errors import UserError, one_line
from rewardlab.paths import describe_os_error
from rewardlab.sources import RewardSource
from rewardlab.types import TrialResult


@dataclass(frozen=True)
class TrialTask:
    """One trial as a worker receives it (picklable).

    :param trial_id: the store's row id
    :param key: ``task|reward|algo|seed``
    :param task: env card id or path
    :param source: the reward source, already resolved to what needs no file and no generation
        (:func:`rewardlab.sources.as_inline`), so the worker trains on the program the runner recorded
    :param config: trainer, algorithm, seed, budget, evaluation
    :param trial_dir: the trial's directory (exists, empty)
    """

    trial_id: int
    key: str
    task: str
    source: RewardSource
    config: TrainConfig
    trial_dir: str


@dataclass(frozen=True)
class TrialOutcome:
    """What became of a trial: a result, or one line saying why it failed."""

    result: TrialResult | None = None
    error: str | None = None


def describe_error(error: BaseException) -> str:
    """An exception as the one line stored for a failed trial: a user error's message, an OS error's
    reason and file, otherwise the type and message."""
    if isinstance(error, UserError):
        return one_line(str(error))
    if isinstance(error, OSError):
        return one_line(describe_os_error(error))
    text = one_line(str(error))
    return f"{type(error).__name__}: {text}".rstrip(": ")


def run_trial_task(task: TrialTask) -> TrialOutcome:
    """Train one trial (in a worker process or a Ray task); never raises: errors become one line, with
    the traceback in ``error.txt`` in the trial's directory when it can be written."""
    try:
        from rewardlab.runtime import limit_threads
        from rewardlab.training import train

        limit_threads()
        result = train(task.task, task.source, task.config.algo, task.config.budget.steps, task.config.seed,
                       Path(task.trial_dir), eval_episodes=task.config.evaluation.episodes,
                       eval_every=task.config.evaluation.every, preset_overrides=task.config.overrides,
                       trainer=task.config.trainer)
        return TrialOutcome(result=result)
    except Exception as e:  # the trial fails, the run goes on
        message = describe_error(e)
        if isinstance(e, OSError) and not e.filename:  # a failed flush names no file: say where it wrote
            message += f" (writing into {task.trial_dir})"
        try:
            Path(task.trial_dir, "error.txt").write_text(traceback.format_exc())
        except OSError:
            pass  # a full disk or a read-only directory: the one line in the store is what is kept
        return TrialOutcome(error=message)


class Backend(Protocol):
    """Runs trial tasks somewhere and reports their outcomes.

    :cvar name: ``local`` or ``ray``
    """

    name: str
    capacity: int

    def submit(self, task: TrialTask) -> None:
        """Start a task (the runner never submits more than ``capacity`` at once)."""

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        """Outcomes of tasks that finished (or whose worker died), waiting at most ``timeout`` seconds."""

    def in_flight(self) -> int:
        """Tasks submitted and not yet reported."""

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers; ``cancel`` stops tasks still running (an interrupted run)."""
