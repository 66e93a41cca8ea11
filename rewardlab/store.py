"""The run store: one SQLite database (WAL mode) for runs, trials, reward programs, metrics, LLM
exchanges, generation candidates and the correction memory; large artefacts (models, logs, videos)
live in run directories beside it.

This is the one place that writes the database, and it sits low in the package (it imports only
:mod:`rewardlab.types` and :mod:`rewardlab.errors`) so that every layer that records something can
use it. Every write is a short transaction, so a process killed at any moment leaves each row in its
previous state or its new one, never half written. Reads return typed records, never raw rows.

**Schema versions.** The schema is built by :data:`MIGRATIONS`, applied in order: a new database
runs all of them, an older one only those past its version, each in its own transaction, after a
backup copy of the file (``<db>.v<N>.bak``). New subsystems add tables only by appending a migration.

**Runs** end ``done``, ``failed`` or ``interrupted``; ``running`` only while a process holds the run's
*lease* (:meth:`RunStore.acquire_run`): its pid, host and a heartbeat. A second process refuses to
work on a held run; a lease whose holder is gone (its pid is dead on this host, or its heartbeat is
older than :data:`LEASE_STALE_S`) is taken over.

**Trials**: ``pending`` → ``running`` → ``done`` | ``failed``; a killed run's ``running`` trials go
back to ``pending`` when it is resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from rewardlab.errors import UserError
from rewardlab.types import TrialResult

#: The store's file name inside a runs root (``<out>/rewardlab.sqlite``).
DB_NAME = "rewardlab.sqlite"
TrialStatus = Literal["pending", "running", "done", "failed"]
TRIAL_STATUSES: tuple[TrialStatus, ...] = ("pending", "running", "done", "failed")
RunStatus = Literal["running", "done", "failed", "interrupted"]
RUN_STATUSES: tuple[RunStatus, ...] = ("running", "done", "failed", "interrupted")
#: A lease whose heartbeat is older than this is free, whoever held it (a holder on another host, or a
#: frozen process); the holder beats every :data:`LEASE_BEAT_S`.
LEASE_STALE_S = 60.0
LEASE_BEAT_S = 5.0



# -- the schema, as ordered migrations -------------------------------------------------------------
# Version 1 is the schema of rewardlab 0.1.0 (tests/fixtures/store_v1.sqlite was written by it).
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id        TEXT PRIMARY KEY,              -- <spec name>-<YYYYmmdd-HHMMSS>
    spec_name TEXT NOT NULL,
    spec_yaml TEXT NOT NULL,                 -- the spec file's text when the run was made
    created   TEXT NOT NULL,                 -- ISO 8601, UTC
    status    TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed'))
);
CREATE INDEX IF NOT EXISTS runs_by_spec ON runs (spec_name, created);
CREATE TABLE IF NOT EXISTS reward_programs (
    id        TEXT PRIMARY KEY,              -- sha256 of the source
    source    TEXT NOT NULL,
    origin    TEXT NOT NULL,                 -- file, reference, llm, shaper, ...
    card_id   TEXT,
    parent_id TEXT REFERENCES reward_programs (id),   -- lineage: the program this one was revised from
    created   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,               -- task|reward|algo|seed
    task        TEXT NOT NULL,
    reward      TEXT NOT NULL,               -- the reward source's name
    algo        TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
    started     TEXT,
    finished    TEXT,
    result_json TEXT,
    error       TEXT,
    dir         TEXT,
    program_id  TEXT REFERENCES reward_programs (id),  -- the program trained on (null for env)
    UNIQUE (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    step     INTEGER NOT NULL,
    name     TEXT NOT NULL,
    value    REAL
);
CREATE INDEX IF NOT EXISTS metrics_by_trial ON metrics (trial_id, name, step);
CREATE TABLE IF NOT EXISTS llm_exchanges (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT REFERENCES runs (id),
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    params_json TEXT,
    prompt_json TEXT NOT NULL,
    reply       TEXT,                        -- JSON list of the reply texts, one per sample (NULL: a failed attempt)
    tokens_in   INTEGER,
    tokens_out  INTEGER,
    latency_s   REAL,
    error       TEXT,
    created     TEXT NOT NULL,
    request_key TEXT,                        -- LLMRequest.key(): the hash replay finds replies by
    n           INTEGER,                     -- samples asked for
    purpose     TEXT,                        -- what the request was for (initial, error feedback, ...)
    card_id     TEXT
);
CREATE INDEX IF NOT EXISTS llm_exchanges_by_key ON llm_exchanges (request_key, id);
CREATE INDEX IF NOT EXISTS llm_exchanges_by_run ON llm_exchanges (run_id, id);
CREATE TABLE IF NOT EXISTS candidates (        -- reward programs met during a generation run, scored
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    program_id  TEXT REFERENCES reward_programs (id),
    round       INTEGER NOT NULL,
    sample      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,  -- 0 the sampled program, k the k-th error fix
    status      TEXT NOT NULL,               -- rejected | checked | trained | failed
    error       TEXT,
    checks_json TEXT,                        -- sandbox trial and trajectory preference reports
    probe_json  TEXT,                        -- the training probe's result
    score       REAL,                        -- what ranks candidates: success rate, else env return
    created     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS candidates_by_program ON candidates (program_id);
CREATE TABLE IF NOT EXISTS corrections (       -- correction memory: (failing code, feedback, fixed code) pairs
    id           INTEGER PRIMARY KEY,
    family       TEXT NOT NULL,               -- the card's simulator family (metaworld, mujoco, ...)
    card_id      TEXT NOT NULL,
    rule         TEXT NOT NULL,               -- the rule the failing code broke (import, output, runtime, ...)
    failing_code TEXT NOT NULL,
    feedback     TEXT NOT NULL,               -- the one-line error the checks gave
    fixed_code   TEXT NOT NULL,               -- verified: it passed check_program for the card
    origin       TEXT NOT NULL CHECK (origin IN ('generation', 'teacher')),
    created      TEXT NOT NULL,
    UNIQUE (failing_code, fixed_code)
);
CREATE INDEX IF NOT EXISTS corrections_by_family ON corrections (family, rule);
"""

_RUNS_V2 = """
CREATE TABLE runs_v2 (
    id          TEXT PRIMARY KEY,            -- <spec name>-<YYYYmmdd-HHMMSS>
    spec_name   TEXT NOT NULL,
    spec_yaml   TEXT NOT NULL,               -- the spec file's text when the run was made
    created     TEXT NOT NULL,               -- ISO 8601, UTC
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    ended       TEXT,                        -- when it last stopped, with the reason below
    reason      TEXT,                        -- one line: why it failed or was interrupted
    holder_pid  INTEGER,                     -- the lease: which process works on it now
    holder_host TEXT,
    heartbeat   TEXT
)
"""


def _migrate_v2(db: sqlite3.Connection) -> None:
    """Runs: ``interrupted`` status, end reason, the lease. Trials: budget, trainer, settings and source
    as run (so a resume can refuse a changed one). Generated sources: which program a run generated."""
    import yaml

    db.execute(_RUNS_V2)
    # a run left 'running' by 0.1.0 was killed: it was interrupted
    db.execute("INSERT INTO runs_v2 (id, spec_name, spec_yaml, created, status) "
               "SELECT id, spec_name, spec_yaml, created, "
               "CASE status WHEN 'running' THEN 'interrupted' ELSE status END FROM runs")
    db.execute("DROP INDEX IF EXISTS runs_by_spec")
    db.execute("DROP TABLE runs")  # foreign keys are off during migrations: trials keep their rows
    db.execute("ALTER TABLE runs_v2 RENAME TO runs")
    db.execute("CREATE INDEX runs_by_spec ON runs (spec_name, created)")
    for column in ("steps INTEGER", "trainer TEXT", "config_json TEXT", "source_json TEXT"):
        db.execute(f"ALTER TABLE trials ADD COLUMN {column}")
    for run_id, spec_yaml in db.execute("SELECT id, spec_yaml FROM runs").fetchall():
        try:
            steps = ((yaml.safe_load(spec_yaml) or {}).get("budget") or {}).get("steps")
        except (yaml.YAMLError, AttributeError):
            steps = None
        if isinstance(steps, int):
            db.execute("UPDATE trials SET steps = ?, trainer = 'sb3' WHERE run_id = ?", (steps, run_id))
    db.execute("UPDATE trials SET status = 'pending', started = NULL WHERE status = 'running'")
    db.execute("""
        CREATE TABLE generated_sources (          -- a generated reward source's program, per run and task
            run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            reward     TEXT NOT NULL,              -- the source's name in the spec
            task       TEXT NOT NULL,
            program_id TEXT NOT NULL REFERENCES reward_programs (id),
            generation TEXT,                       -- the generation run that produced it
            created    TEXT NOT NULL,
            PRIMARY KEY (run_id, reward, task)
        )""")


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` runs inside a transaction with foreign keys off."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)
    return apply


#: Every schema change, oldest first; :data:`SCHEMA_VERSION` is the last one's version.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, trials, programs, metrics, LLM exchanges, candidates, corrections", _script(_SCHEMA_V1)),
    Migration(2, "run lease and end reason, 'interrupted' runs, trial budgets and sources, generated sources",
              _migrate_v2),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def now() -> str:
    """The current time as stored: ISO 8601 in UTC with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def program_id(source: str) -> str:
    """A reward program's id: the sha256 of its source text."""
    return hashlib.sha256(source.encode()).hexdigest()


class StoreError(UserError):
    """The database could not be read or written (damaged, full disk, read-only); one line says which."""


class RunBusyError(UserError):
    """Another live process holds the run's lease."""


def _describe_sqlite(path: Path, error: sqlite3.Error) -> str:
    text = " ".join(str(error).split())
    if "malformed" in text or "not a database" in text:
        hint = (f"the file is damaged; salvage it with `sqlite3 {path} .recover | sqlite3 fixed.sqlite` or "
                "use another --out")
    elif "full" in text:
        hint = "free disk space and run again; the step that failed was rolled back, nothing else is lost"
    elif "readonly" in text or "read-only" in text:
        hint = "make the file and its folder writable, or use another --out"
    elif "locked" in text or "busy" in text:
        hint = "another process is writing to it; try again when it is done"
    else:
        hint = "see the SQLite message above"
    return f"run store {path}: {text} ({hint})"


# -- typed records ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``.

    :param status: ``running`` (held by a live process), ``done``, ``failed`` or ``interrupted``
    :param reason: why it failed or was interrupted (one line), else ``None``
    :param holder_pid: the process holding its lease (``None``: free)
    """

    id: str
    spec_name: str
    spec_yaml: str
    created: str
    status: RunStatus
    ended: str | None = None
    reason: str | None = None
    holder_pid: int | None = None
    holder_host: str | None = None
    heartbeat: str | None = None


@dataclass(frozen=True)
class NewTrial:
    """A trial to add to a run (what the runner knows before training it).

    :param key: identity within the run: ``task|reward|algo|seed``
    :param reward: the reward source's name
    :param steps: the training budget
    :param program_id: the program trained on (``None``: the env's own reward)
    :param config_json: the trial's training settings as run (JSON)
    :param source_json: the reward source as specified (JSON)
    """

    key: str
    task: str
    reward: str
    algo: str
    seed: int
    steps: int | None = None
    trainer: str | None = None
    program_id: str | None = None
    config_json: str | None = None
    source_json: str | None = None


@dataclass(frozen=True)
class TrialRecord:
    """One row of ``trials``; ``result`` is the stored :class:`~rewardlab.types.TrialResult` (``None``
    until done)."""

    id: int
    run_id: str
    key: str
    task: str
    reward: str
    algo: str
    seed: int
    status: TrialStatus
    started: str | None
    finished: str | None
    result: TrialResult | None
    error: str | None
    dir: str | None
    program_id: str | None
    steps: int | None = None
    trainer: str | None = None
    config_json: str | None = None
    source_json: str | None = None


@dataclass(frozen=True)
class ExchangeRecord:
    """One row of ``llm_exchanges``, JSON columns parsed.

    ``texts`` is the reply's texts, one per sample (``None`` when the attempt failed; ``error`` says
    why); ``messages`` the chat messages sent; ``params`` the request parameters and its metadata.
    """

    id: int
    run_id: str | None
    provider: str
    model: str
    params: dict[str, Any]
    messages: list[dict[str, str]]
    texts: list[str] | None
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None
    error: str | None
    created: str
    request_key: str | None
    n: int | None
    purpose: str | None
    card_id: str | None


@dataclass(frozen=True)
class ProgramRecord:
    """One row of ``reward_programs``."""

    id: str
    source: str
    origin: str
    card_id: str | None
    parent_id: str | None
    created: str


@dataclass(frozen=True)
class CandidateRecord:
    """One row of ``candidates``: a program met during a generation run, with its checks and probe.

    :param attempt: 0 for the sampled program, k for its k-th error fix
    :param status: ``rejected``, ``checked``, ``trained`` or ``failed``
    :param checks: the sandbox trial and trajectory preference reports
    :param probe: the training probe's result summary
    :param score: what ranks candidates: success rate, else env return
    """

    id: int
    run_id: str
    program_id: str | None
    round: int
    sample: int
    attempt: int
    status: str
    error: str | None
    checks: dict[str, Any] | None
    probe: dict[str, Any] | None
    score: float | None
    created: str


@dataclass(frozen=True)
class CorrectionRecord:
    """One row of ``corrections``: a verified (failing code, feedback, fixed code) pair."""

    id: int
    family: str
    card_id: str
    rule: str
    failing_code: str
    feedback: str
    fixed_code: str
    origin: Literal["generation", "teacher"]
    created: str


@dataclass(frozen=True)
class GeneratedSourceRecord:
    """One row of ``generated_sources``: the program a run generated for a (reward source, task)."""

    run_id: str
    reward: str
    task: str
    program_id: str
    generation: str | None
    created: str


@dataclass
class LineageNode:
    """A program in a lineage tree, with its candidates (scores, statuses) and its revisions."""

    program: ProgramRecord
    candidates: list[CandidateRecord]
    children: list[LineageNode] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.candidates[-1].status if self.candidates else "stored"

    @property
    def best_score(self) -> float | None:
        scores = [c.score for c in self.candidates if c.score is not None]
        return max(scores) if scores else None

    @property
    def last_error(self) -> str | None:
        return next((c.error for c in reversed(self.candidates) if c.error), None)


R = TypeVar("R")


class RunStore:
    """The SQLite run store (see the module docstring).

    :param path: the database file; created with its folder and schema when missing, upgraded in
        place (after a backup copy) when it was written by an older rewardlab
    :raises StoreError: the file cannot be opened, is damaged, or was written by a newer rewardlab
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"run store {self.path}: cannot create its folder ({e.strerror})") from None
        try:
            # isolation_level=None: we open transactions ourselves, BEGIN IMMEDIATE, kept short.
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise StoreError(f"run store {self.path} cannot be opened: {e}") from None
        try:
            self._migrate()
            self._db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            self._db.close()
            raise

    # -- schema ---------------------------------------------------------------------------------
    def _stored_version(self) -> int:
        has_table = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if not has_table:
            return 0
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        """Apply the migrations past the stored version, each in its own transaction."""
        try:
            version = self._stored_version()
        except sqlite3.Error as e:
            raise StoreError(_describe_sqlite(self.path, e)) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"run store {self.path} has schema version {version}, newer than this rewardlab "
                f"understands ({SCHEMA_VERSION}); upgrade rewardlab"
            )
        pending = [m for m in MIGRATIONS if m.version > version]
        if pending and version > 0:
            self._backup(version)
        self._db.execute("PRAGMA foreign_keys=OFF")  # table rebuilds must not cascade (SQLite's rule)
        for migration in pending:
            with self._transaction() as db:
                migration.apply(db)
                bad = db.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise StoreError(f"run store {self.path}: migration to version {migration.version} "
                                     f"left {len(bad)} broken references; the store was not changed")
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))

    def _backup(self, version: int) -> None:
        """Copy the database before upgrading it (``<db>.v<version>.bak``), once."""
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if target.exists():
            return
        try:
            with sqlite3.connect(target) as copy:
                self._db.backup(copy)
            copy.close()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"run store {self.path}: cannot back it up before upgrading it ({e}); "
                             "nothing was changed") from None

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: everything inside commits together or not at all. SQLite
        failures (full disk, damaged file, read-only) become one-line :class:`StoreError`\\ s."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(_describe_sqlite(self.path, e)) from None
        try:
            yield self._db
        except BaseException as e:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.IntegrityError):
                raise StoreError(_describe_sqlite(self.path, e)) from None
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(_describe_sqlite(self.path, e)) from None

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A read; SQLite failures become one-line :class:`StoreError`\\ s."""
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as e:
            raise StoreError(_describe_sqlite(self.path, e)) from None

    def _one(self, sql: str, args: Iterable[Any], make: Callable[[sqlite3.Row], R]) -> R | None:
        rows = self._query(sql, args)
        return make(rows[0]) if rows else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self._query("PRAGMA journal_mode")[0][0])

    @property
    def schema_version(self) -> int:
        return int(self._query("SELECT max(version) FROM schema_version")[0][0])

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, run_id: str, spec_name: str, spec_yaml: str, hold: bool = False) -> RunRecord:
        """Record a new run (status ``running``); raise :class:`UserError` when the id is taken.

        :param hold: also take its lease for this process (see :meth:`acquire_run`)
        """
        pid, host = (os.getpid(), socket.gethostname()) if hold else (None, None)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO runs (id, spec_name, spec_yaml, created, status, holder_pid, holder_host, heartbeat) "
                    "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                    (run_id, spec_name, spec_yaml, now(), pid, host, now() if hold else None),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"run {run_id!r} already exists in {self.path}") from None
        run = self.get_run(run_id)
        assert run is not None
        return run

    def set_run_status(self, run_id: str, status: RunStatus, reason: str | None = None) -> None:
        """Set a run's status; a final one (``done``, ``failed``, ``interrupted``) records when and why
        and frees the lease."""
        with self._transaction() as db:
            if status == "running":
                db.execute("UPDATE runs SET status = 'running', ended = NULL, reason = NULL WHERE id = ?", (run_id,))
            else:
                db.execute("UPDATE runs SET status = ?, ended = ?, reason = ?, holder_pid = NULL, holder_host = NULL, "
                           "heartbeat = NULL WHERE id = ?", (status, now(), reason, run_id))

    def update_spec_yaml(self, run_id: str, spec_yaml: str) -> None:
        """Replace a run's stored spec text (a resumed run may have added trials)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET spec_yaml = ? WHERE id = ?", (spec_yaml, run_id))

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._one("SELECT * FROM runs WHERE id = ?", (run_id,), _run)

    def latest_run(self, spec_name: str) -> RunRecord | None:
        """The most recently created run of a spec, or ``None``."""
        return self._one("SELECT * FROM runs WHERE spec_name = ? ORDER BY created DESC, rowid DESC LIMIT 1",
                         (spec_name,), _run)

    def list_runs(self, spec_name: str | None = None) -> list[RunRecord]:
        """All runs (or one spec's), newest first."""
        if spec_name is None:
            return [_run(r) for r in self._query("SELECT * FROM runs ORDER BY created DESC, rowid DESC")]
        return [_run(r) for r in self._query("SELECT * FROM runs WHERE spec_name = ? ORDER BY created DESC, "
                                             "rowid DESC", (spec_name,))]

    # -- the run lease ---------------------------------------------------------------------------
    def acquire_run(self, run_id: str) -> RunRecord:
        """Take the run's lease for this process and set it ``running``.

        :raises RunBusyError: another live process holds it (one line naming its pid and host)
        """
        pid, host = os.getpid(), socket.gethostname()
        with self._transaction() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UserError(f"no run {run_id!r} in {self.path}")
            run = _run(row)
            if run.holder_pid is not None and (run.holder_pid, run.holder_host) != (pid, host) and holder_alive(run):
                raise RunBusyError(
                    f"run {run_id} is being worked on by process {run.holder_pid} on {run.holder_host} "
                    f"(heartbeat {run.heartbeat[:19].replace('T', ' ') if run.heartbeat else '?'} UTC); "
                    "wait for it to finish or stop it first"
                )
            db.execute("UPDATE runs SET holder_pid = ?, holder_host = ?, heartbeat = ?, status = 'running', "
                       "ended = NULL, reason = NULL WHERE id = ?", (pid, host, now(), run_id))
        record = self.get_run(run_id)
        assert record is not None
        return record

    def heartbeat(self, run_id: str) -> bool:
        """Refresh this process's lease on the run; False when it no longer holds it."""
        with self._transaction() as db:
            cur = db.execute("UPDATE runs SET heartbeat = ? WHERE id = ? AND holder_pid = ? AND holder_host = ?",
                             (now(), run_id, os.getpid(), socket.gethostname()))
            return cur.rowcount == 1

    def release_run(self, run_id: str) -> None:
        """Give up this process's lease (the status stays as set)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET holder_pid = NULL, holder_host = NULL, heartbeat = NULL "
                       "WHERE id = ? AND holder_pid = ? AND holder_host = ?", (run_id, os.getpid(), socket.gethostname()))

    # -- trials --------------------------------------------------------------------------------
    def add_trials(self, run_id: str, trials: Iterable[NewTrial]) -> int:
        """Add ``pending`` trials to a run, skipping keys it already has; return how many were added."""
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO trials (run_id, key, task, reward, algo, seed, status, program_id, steps, "
                "trainer, config_json, source_json) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                [(run_id, t.key, t.task, t.reward, t.algo, t.seed, t.program_id, t.steps, t.trainer, t.config_json,
                  t.source_json) for t in trials],
            )
            return db.total_changes - before

    def replace_trial(self, trial_id: int, trial: NewTrial) -> None:
        """Reset a trial to ``pending`` with new settings and program (a resume that re-runs what
        changed); its old result and metrics are dropped."""
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            db.execute(
                "UPDATE trials SET status = 'pending', started = NULL, finished = NULL, result_json = NULL, "
                "error = NULL, program_id = ?, steps = ?, trainer = ?, config_json = ?, source_json = ? WHERE id = ?",
                (trial.program_id, trial.steps, trial.trainer, trial.config_json, trial.source_json, trial_id),
            )

    def mark_running(self, trial_id: int, trial_dir: str | Path) -> None:
        """A worker has started the trial: status ``running``, start time now, old outcome cleared."""
        with self._transaction() as db:
            db.execute(
                "UPDATE trials SET status = 'running', started = ?, finished = NULL, result_json = NULL, "
                "error = NULL, dir = ? WHERE id = ?",
                (now(), str(trial_dir), trial_id),
            )
            db.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))

    def mark_done(self, trial_id: int, result: TrialResult,
                  metrics: Iterable[tuple[int, str, float | None]] = ()) -> None:
        """The trial finished: store its result and its metrics ``(step, name, value)`` together."""
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            db.executemany(
                "INSERT INTO metrics (trial_id, step, name, value) VALUES (?, ?, ?, ?)",
                [(trial_id, int(step), name, None if value is None else float(value)) for step, name, value in metrics],
            )
            db.execute(
                "UPDATE trials SET status = 'done', finished = ?, result_json = ?, error = NULL WHERE id = ?",
                (now(), result.to_json(), trial_id),
            )

    def mark_failed(self, trial_id: int, error: str) -> None:
        """The trial failed; ``error`` is one line saying why."""
        with self._transaction() as db:
            db.execute(
                "UPDATE trials SET status = 'failed', finished = ?, error = ? WHERE id = ?",
                (now(), error, trial_id),
            )

    def reset_interrupted(self, run_id: str) -> int:
        """Turn the run's ``running`` trials (left by a killed or stopped process) back into ``pending``."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE trials SET status = 'pending', started = NULL WHERE run_id = ? AND status = 'running'",
                (run_id,),
            )
            return cur.rowcount

    def trials(self, run_id: str, status: TrialStatus | None = None) -> list[TrialRecord]:
        """The run's trials in insertion order, optionally only those with one status."""
        sql, args = "SELECT * FROM trials WHERE run_id = ?", [run_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [_trial(r) for r in self._query(sql + " ORDER BY id", args)]

    def trial(self, trial_id: int) -> TrialRecord | None:
        return self._one("SELECT * FROM trials WHERE id = ?", (trial_id,), _trial)

    def status_counts(self, run_id: str) -> dict[TrialStatus, int]:
        """How many of the run's trials are in each status (every status present, zero or not)."""
        counts: dict[TrialStatus, int] = dict.fromkeys(TRIAL_STATUSES, 0)
        for status, n in self._query("SELECT status, count(*) FROM trials WHERE run_id = ? GROUP BY status", (run_id,)):
            counts[status] = n
        return counts

    def metrics(self, trial_id: int, name: str | None = None) -> list[tuple[int, str, float | None]]:
        """A trial's metrics as ``(step, name, value)`` ordered by name and step."""
        sql, args = "SELECT step, name, value FROM metrics WHERE trial_id = ?", [str(trial_id)]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        return [(int(r[0]), str(r[1]), r[2]) for r in self._query(sql + " ORDER BY name, step", args)]

    # -- generated sources -----------------------------------------------------------------------
    def set_generated_source(self, run_id: str, reward: str, task: str, program_id: str,
                             generation: str | None) -> None:
        """Record the program a run generated for a (reward source, task)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO generated_sources (run_id, reward, task, program_id, generation, created) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (run_id, reward, task, program_id, generation, now()))

    def generated_source(self, run_id: str, reward: str, task: str) -> GeneratedSourceRecord | None:
        return self._one("SELECT * FROM generated_sources WHERE run_id = ? AND reward = ? AND task = ?",
                         (run_id, reward, task), lambda r: GeneratedSourceRecord(**dict(r)))

    # -- reward programs -----------------------------------------------------------------------
    def add_program(
        self, source: str, origin: str, card_id: str | None = None, parent_id: str | None = None
    ) -> str:
        """Record a reward program (insert-or-ignore: the same source is stored once); return its id.

        :param origin: where it came from: ``file``, ``reference``, ``llm``, ...
        :param parent_id: the program it was revised from (feedback lineage)
        """
        pid = program_id(source)
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO reward_programs (id, source, origin, card_id, parent_id, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pid, source, origin, card_id, parent_id, now()),
            )
        return pid

    def get_program(self, pid: str) -> ProgramRecord | None:
        return self._one("SELECT * FROM reward_programs WHERE id = ?", (pid,), lambda r: ProgramRecord(**dict(r)))

    def lineage(self, pid: str) -> list[ProgramRecord]:
        """The program and its ancestors, newest first."""
        chain: list[ProgramRecord] = []
        seen: set[str] = set()
        current: str | None = pid
        while current is not None and current not in seen:
            seen.add(current)
            record = self.get_program(current)
            if record is None:
                break
            chain.append(record)
            current = record.parent_id
        return chain

    def children(self, pid: str) -> list[ProgramRecord]:
        """Programs revised from ``pid`` (one step down the lineage), oldest first."""
        rows = self._query("SELECT * FROM reward_programs WHERE parent_id = ? ORDER BY created, id", (pid,))
        return [ProgramRecord(**dict(r)) for r in rows]

    def lineage_tree(self, pid: str) -> LineageNode:
        """The whole family of a program: the root of its ancestors, and every revision below it."""
        root = self.lineage(pid)[-1]
        seen = {root.id}

        def grow(record: ProgramRecord) -> LineageNode:
            node = LineageNode(record, self.candidates(program_id=record.id))
            for child in self.children(record.id):
                if child.id not in seen:
                    seen.add(child.id)
                    node.children.append(grow(child))
            return node

        return grow(root)

    # -- generation candidates ------------------------------------------------------------------
    def add_candidate(self, run_id: str, program_id: str | None, round: int, sample: int, attempt: int,
                      status: str, error: str | None = None, checks: dict[str, Any] | None = None) -> int:
        """Record a candidate program of a generation run; return its row id."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO candidates (run_id, program_id, round, sample, attempt, status, error, checks_json, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, program_id, round, sample, attempt, status, error,
                 json.dumps(checks) if checks is not None else None, now()),
            )
            return int(cur.lastrowid or 0)

    def update_candidate(self, candidate_id: int, *, status: str | None = None, error: str | None = None,
                         checks: dict[str, Any] | None = None, probe: dict[str, Any] | None = None,
                         score: float | None = None) -> None:
        """Set the given fields of a candidate (the others stay)."""
        fields = {"status": status, "error": error, "score": score,
                  "checks_json": json.dumps(checks) if checks is not None else None,
                  "probe_json": json.dumps(probe) if probe is not None else None}
        fields = {k: v for k, v in fields.items() if v is not None}
        if not fields:
            return
        with self._transaction() as db:
            db.execute(f"UPDATE candidates SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                       (*fields.values(), candidate_id))

    def candidates(self, run_id: str | None = None, program_id: str | None = None) -> list[CandidateRecord]:
        """Candidates of a run or of a program, oldest first, JSON columns parsed."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if program_id is not None:
            where.append("program_id = ?")
            args.append(program_id)
        sql = "SELECT * FROM candidates" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [_candidate(r) for r in self._query(sql, args)]

    def find_program(self, prefix: str) -> ProgramRecord:
        """The program whose id starts with ``prefix`` (at least 6 characters); UserError otherwise."""
        if len(prefix) < 6:
            raise UserError(f"reward id {prefix!r} is too short; give at least 6 characters")
        rows = self._query("SELECT * FROM reward_programs WHERE id LIKE ? LIMIT 2", (prefix + "%",))
        if not rows:
            raise UserError(f"no reward program with id {prefix!r} in {self.path}")
        if len(rows) > 1:
            raise UserError(f"reward id {prefix!r} is ambiguous; give more characters")
        return ProgramRecord(**dict(rows[0]))

    # -- correction memory ---------------------------------------------------------------------
    def add_correction(self, family: str, card_id: str, rule: str, failing_code: str, feedback: str,
                       fixed_code: str, origin: Literal["generation", "teacher"]) -> tuple[int, bool]:
        """Store a (failing code, feedback, fixed code) pair; the same pair is stored once.

        The caller verifies the fix (:class:`rewardlab.text2reward.memory.CorrectionMemory` does).
        Return the pair's id and whether it was new.
        """
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO corrections (family, card_id, rule, failing_code, feedback, fixed_code, "
                "origin, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (family, card_id, rule, failing_code, feedback, fixed_code, origin, now()),
            )
            if cur.rowcount:
                return int(cur.lastrowid), True  # type: ignore[arg-type]
            row = db.execute("SELECT id FROM corrections WHERE failing_code = ? AND fixed_code = ?",
                             (failing_code, fixed_code)).fetchone()
            return int(row[0]), False

    def corrections(self, family: str | None = None, card_id: str | None = None, rule: str | None = None,
                    origin: str | None = None) -> list[CorrectionRecord]:
        """Stored correction pairs, oldest first, optionally only those matching every given field."""
        where, args = [], []
        for column, value in (("family", family), ("card_id", card_id), ("rule", rule), ("origin", origin)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM corrections" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [CorrectionRecord(**dict(r)) for r in self._query(sql, args)]

    # -- LLM exchanges -------------------------------------------------------------------------
    def add_exchange(
        self,
        provider: str,
        model: str,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        texts: list[str] | None,
        *,
        run_id: str | None = None,
        request_key: str | None = None,
        n: int | None = None,
        purpose: str | None = None,
        card_id: str | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_s: float | None = None,
        error: str | None = None,
    ) -> int:
        """Record one LLM exchange (one attempt: a failed one has ``texts=None`` and an ``error``);
        return its id. Ids grow with time, so ordering by id is the order the calls were made.

        :param run_id: the run it belongs to, or ``None`` outside a run (``rewardlab generate``)
        :param request_key: :meth:`rewardlab.llm.base.LLMRequest.key`, what replay looks replies up by
        """
        try:
            with self._transaction() as db:
                cur = db.execute(
                    "INSERT INTO llm_exchanges (run_id, provider, model, params_json, prompt_json, reply, tokens_in, "
                    "tokens_out, latency_s, error, created, request_key, n, purpose, card_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id, provider, model, json.dumps(params, default=str), json.dumps(messages),
                        None if texts is None else json.dumps(list(texts)), tokens_in, tokens_out, latency_s,
                        error, now(), request_key, n, purpose, card_id,
                    ),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"run {run_id!r} is not in {self.path}: create the run before logging exchanges to it") from None
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def find_exchanges(
        self, request_key: str, run_id: str | None = None, provider: str | None = None
    ) -> list[ExchangeRecord]:
        """The exchanges made for one request key, oldest first, failed attempts included.

        :param run_id: only those of this run (``None``: every run)
        :param provider: only those of this provider
        """
        sql, args = "SELECT * FROM llm_exchanges WHERE request_key = ?", [request_key]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        if provider is not None:
            sql += " AND provider = ?"
            args.append(provider)
        return [_exchange(r) for r in self._query(sql + " ORDER BY id", args)]

    def exchanges(self, run_id: str | None = None) -> list[ExchangeRecord]:
        """Every stored exchange, or one run's, oldest first."""
        if run_id is None:
            rows = self._query("SELECT * FROM llm_exchanges ORDER BY id")
        else:
            rows = self._query("SELECT * FROM llm_exchanges WHERE run_id = ? ORDER BY id", (run_id,))
        return [_exchange(r) for r in rows]

    def exchange(self, exchange_id: int) -> ExchangeRecord | None:
        return self._one("SELECT * FROM llm_exchanges WHERE id = ?", (exchange_id,), _exchange)


def holder_alive(run: RunRecord) -> bool:
    """Whether the process holding a run's lease may still be working on it: its pid is alive on this
    host, or (another host) its heartbeat is fresh."""
    try:
        beat = datetime.fromisoformat(run.heartbeat) if run.heartbeat else None
    except ValueError:
        beat = None
    fresh = beat is not None and (datetime.now(timezone.utc) - beat).total_seconds() < LEASE_STALE_S
    if run.holder_host == socket.gethostname() and run.holder_pid is not None:
        try:
            os.kill(run.holder_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return fresh
        return fresh or beat is None
    return fresh


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**dict(row))


def _exchange(row: sqlite3.Row) -> ExchangeRecord:
    data = dict(row)
    params_json, prompt_json, reply = data.pop("params_json"), data.pop("prompt_json"), data.pop("reply")
    return ExchangeRecord(
        **data,
        params=json.loads(params_json) if params_json else {},
        messages=json.loads(prompt_json),
        texts=json.loads(reply) if reply is not None else None,
    )


def _candidate(row: sqlite3.Row) -> CandidateRecord:
    data = dict(row)
    checks, probe = data.pop("checks_json"), data.pop("probe_json")
    return CandidateRecord(**data, checks=json.loads(checks) if checks else None,
                           probe=json.loads(probe) if probe else None)


def _trial(row: sqlite3.Row) -> TrialRecord:
    data = dict(row)
    result_json = data.pop("result_json")
    return TrialRecord(**data, result=TrialResult.model_validate_json(result_json) if result_json else None)
