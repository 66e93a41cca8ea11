"""Refines started from the review page, run in the background one at a time, with a status the page
polls. A job calls the library's :func:`rewardlab.text2reward.loop.refine` (which stores the feedback,
the exchange and the new program); the page itself never writes the store."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardlab.config import GenerationConfig
from rewardlab.errors import UserError, one_line

JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class RefineJob:
    """One refine in the background.

    :param lines: the refine's progress lines, as the CLI would print them
    :param child_id: the new version's id once it passed the checks
    :param message: one line: why it failed, or what it produced
    :param problem: why nothing could be asked, known when it was sent, with what to do from the page
    :param warning: what the reviewer must know about the provider (the offline baseline reads no feedback)
    """

    id: int
    parent_id: str
    feedback: str
    tags: list[str]
    provider_note: str
    status: JobStatus = "queued"
    lines: list[str] = field(default_factory=list)
    run_id: str | None = None
    child_id: str | None = None
    score: float | None = None
    message: str = ""
    problem: str | None = None
    warning: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


class _Lines:
    """A console stand-in that keeps the lines a refine prints (rich's ``print`` signature)."""

    def __init__(self, job: RefineJob):
        self.job = job

    def print(self, text: Any = "", *args: Any, **kwargs: Any) -> None:
        self.job.lines.append(str(text))


class RefineJobs:
    """The page's background refines: one worker thread (training probes share the machine with the
    server), jobs kept in memory; what they produce is in the run store.

    :param out: the runs root (the store and run directories)
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refine")
        self._jobs: dict[int, RefineJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, parent_id: str, feedback: str, tags: Sequence[str], config: GenerationConfig, note: str,
               observed: str | None = None, problem: str | None = None, warning: str | None = None) -> RefineJob:
        """Queue a refine of ``parent_id``; return its job (its status changes as it runs).

        :param problem: why no provider can be asked (the refine still runs: it stores the feedback in a
            failed run, and the job's message says ``problem`` instead of the command line's advice)
        """
        with self._lock:
            job = RefineJob(next(self._ids), parent_id, feedback, list(tags), note, problem=problem, warning=warning)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, config, observed)
        return job

    def get(self, job_id: int) -> RefineJob | None:
        return self._jobs.get(job_id)

    def all(self) -> list[RefineJob]:
        return sorted(self._jobs.values(), key=lambda j: -j.id)

    def _run(self, job: RefineJob, config: GenerationConfig, observed: str | None) -> None:
        from rewardlab.runtime import limit_threads
        from rewardlab.text2reward.loop import refine

        limit_threads()
        job.status = "running"
        try:
            result = refine(job.parent_id, job.feedback, config, observed=observed, out=self.out,
                            console=_Lines(job), tags=job.tags)
        except UserError as e:
            message = one_line(str(e))
            kept = re.search(r"\(the feedback is kept in run \S+\)", message)
            if job.problem and kept:  # the library's advice names command-line flags; the page says its own
                message = f"{job.problem} {kept.group(0)}"
            job.status, job.message = "failed", message
            return
        except Exception as e:  # the page must say what happened, not hang on "running"
            job.status, job.message = "failed", one_line(f"{type(e).__name__}: {e}")
            return
        job.run_id, job.child_id, job.score = result.run_id, result.best_program_id, result.best_score
        if result.best_program_id is None:
            job.status, job.message = "failed", f"no revision passed the checks ({result.stopped}); see run {result.run_id}"
        else:
            job.status, job.message = "done", f"new version {result.best_program_id[:12]} ({result.stopped})"

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
