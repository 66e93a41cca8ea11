"""E2CL's training records and their JSONL files.

One record is one supervised example of one skill (§6 of ``shared/research/reward_design_algorithms.md``):

- ``plan``: (task, observation, history) -> the next step;
- ``feedback``: (task, observation, history, step) -> ``True`` or ``Error, <reason>``;
- ``correction``: (task, observation, history, erroneous step, its feedback) -> a corrective step.

Each carries where it came from (``expert``, ``teacher_guided``, ``teacher_free``) and, for errors,
the env's error kind, so a run directory's ``datasets/`` shows counts per source and error kind.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SKILLS = ("plan", "feedback", "correction")
SOURCES = ("expert", "teacher_guided", "teacher_free")


@dataclass(frozen=True)
class Context:
    """What an agent sees before a step.

    :param task: the instruction
    :param observation: the env's text observation now
    :param history: earlier steps of the episode with whether the env executed them, oldest first
    """

    task: str
    observation: str
    history: tuple[tuple[str, bool], ...] = ()

    def then(self, step: str, executed: bool, observation: str) -> Context:
        return Context(self.task, observation, (*self.history, (step, executed)))


@dataclass(frozen=True)
class Record:
    """One supervised example (see module docstring).

    :param skill: ``plan``, ``feedback`` or ``correction``
    :param context: the situation before the step
    :param target: what the model should output
    :param step: the candidate step (feedback and correction records)
    :param feedback: the feedback of ``step`` (correction records)
    :param source: ``expert``, ``teacher_guided`` or ``teacher_free``
    :param error_kind: the env's error kind of ``step`` (None: executable, or a plan record)
    """

    skill: str
    context: Context
    target: str
    step: str = ""
    feedback: str = ""
    source: str = "expert"
    error_kind: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Record:
        d = json.loads(line)
        c = d.pop("context")
        ctx = Context(c["task"], c["observation"], tuple((s, bool(ok)) for s, ok in c["history"]))
        return cls(context=ctx, **d)


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    """Write records one JSON object a line; return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as f:
        for r in records:
            f.write(r.to_json() + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[Record]:
    return [Record.from_json(line) for line in path.read_text().splitlines() if line.strip()]


def counts(records: Sequence[Record]) -> dict[str, Any]:
    """Counts per source and skill, and per error kind among feedback records that are errors."""
    by_source: dict[str, dict[str, int]] = {}
    for r in records:
        by_source.setdefault(r.source, dict.fromkeys(SKILLS, 0))[r.skill] += 1
    kinds = Counter(r.error_kind for r in records if r.skill == "feedback" and r.error_kind)
    return {"records": len(records), "by_source": by_source, "error_kinds": dict(sorted(kinds.items()))}
