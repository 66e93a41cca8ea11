"""The run store: one SQLite database (WAL mode) for runs, trials, reward programs, metrics and LLM
exchanges; large artefacts (models, logs, videos) live in run directories beside it.

This is the one place that writes the database. Every write is a short transaction, so a process
killed at any moment leaves each trial either in its previous state or in its new one, never half
written; a killed run leaves trials ``running``, which :meth:`RunStore.reset_interrupted` turns back
into ``pending`` when the run is resumed.

Trial life cycle: ``pending`` → ``running`` → ``done`` | ``failed``; resuming re-runs everything not
``done``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from rewardlab.errors import UserError

SCHEMA_VERSION = 1
#: The store's file name inside a runs root (``<out>/rewardlab.sqlite``).
DB_NAME = "rewardlab.sqlite"
TrialStatus = Literal["pending", "running", "done", "failed"]
TRIAL_STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
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


def now() -> str:
    """The current time as stored: ISO 8601 in UTC with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def program_id(source: str) -> str:
    """A reward program's id: the sha256 of its source text."""
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``."""

    id: str
    spec_name: str
    spec_yaml: str
    created: str
    status: str


@dataclass(frozen=True)
class TrialRecord:
    """One row of ``trials``; ``result`` is the parsed ``result_json`` (``None`` until done)."""

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
    result: dict[str, Any] | None
    error: str | None
    dir: str | None
    program_id: str | None


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


class RunStore:
    """The SQLite run store (see the module docstring).

    :param path: the database file; created with its folder and schema when missing
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we open transactions ourselves, BEGIN IMMEDIATE, kept short.
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            raise UserError(f"run store {self.path} cannot be opened: {e}") from None
        self._create_schema()

    def _create_schema(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise UserError(
                    f"run store {self.path} has schema version {version}, newer than this rewardlab "
                    f"understands ({SCHEMA_VERSION}); upgrade rewardlab"
                )

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, run_id: str, spec_name: str, spec_yaml: str) -> RunRecord:
        """Record a new run (status ``running``); raise :class:`UserError` when the id is taken."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO runs (id, spec_name, spec_yaml, created, status) VALUES (?, ?, ?, ?, 'running')",
                    (run_id, spec_name, spec_yaml, now()),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"run {run_id!r} already exists in {self.path}") from None
        run = self.get_run(run_id)
        assert run is not None
        return run

    def set_run_status(self, run_id: str, status: Literal["running", "done", "failed"]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def update_spec_yaml(self, run_id: str, spec_yaml: str) -> None:
        """Replace a run's stored spec text (a resumed run may have added trials)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET spec_yaml = ? WHERE id = ?", (spec_yaml, run_id))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunRecord(**dict(row)) if row else None

    def latest_run(self, spec_name: str) -> RunRecord | None:
        """The most recently created run of a spec, or ``None``."""
        row = self._db.execute(
            "SELECT * FROM runs WHERE spec_name = ? ORDER BY created DESC, rowid DESC LIMIT 1", (spec_name,)
        ).fetchone()
        return RunRecord(**dict(row)) if row else None

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = self._db.execute("SELECT * FROM runs ORDER BY created DESC, rowid DESC").fetchall()
        return [RunRecord(**dict(r)) for r in rows]

    # -- trials --------------------------------------------------------------------------------
    def add_trials(self, run_id: str, trials: Iterable[Any], program_ids: dict[str, str | None] | None = None) -> int:
        """Add ``pending`` trials to a run, skipping keys it already has; return how many were added.

        :param trials: objects with ``key``, ``task``, ``reward_name``, ``algo`` and ``seed``
            (:class:`rewardlab.runs.spec.TrialSpec`)
        :param program_ids: reward program id per trial key, where the reward is a program
        """
        program_ids = program_ids or {}
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO trials (run_id, key, task, reward, algo, seed, status, program_id) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(run_id, t.key, t.task, t.reward_name, t.algo, t.seed, program_ids.get(t.key)) for t in trials],
            )
            return db.total_changes - before

    def mark_running(self, trial_id: int, trial_dir: str | Path) -> None:
        """A worker has started the trial: status ``running``, start time now, old outcome cleared."""
        with self._transaction() as db:
            db.execute(
                "UPDATE trials SET status = 'running', started = ?, finished = NULL, result_json = NULL, "
                "error = NULL, dir = ? WHERE id = ?",
                (now(), str(trial_dir), trial_id),
            )
            db.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))

    def mark_done(
        self, trial_id: int, result: dict[str, Any], metrics: Iterable[tuple[int, str, float | None]] = ()
    ) -> None:
        """The trial finished: store its result and its metrics ``(step, name, value)`` together."""
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            db.executemany(
                "INSERT INTO metrics (trial_id, step, name, value) VALUES (?, ?, ?, ?)",
                [(trial_id, int(step), name, None if value is None else float(value)) for step, name, value in metrics],
            )
            db.execute(
                "UPDATE trials SET status = 'done', finished = ?, result_json = ?, error = NULL WHERE id = ?",
                (now(), json.dumps(result), trial_id),
            )

    def mark_failed(self, trial_id: int, error: str) -> None:
        """The trial failed; ``error`` is one line saying why."""
        with self._transaction() as db:
            db.execute(
                "UPDATE trials SET status = 'failed', finished = ?, error = ? WHERE id = ?",
                (now(), error, trial_id),
            )

    def reset_interrupted(self, run_id: str) -> int:
        """Turn the run's ``running`` trials (left by a killed process) back into ``pending``."""
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
        return [_trial(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def trial(self, trial_id: int) -> TrialRecord | None:
        row = self._db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return _trial(row) if row else None

    def status_counts(self, run_id: str) -> dict[str, int]:
        """How many of the run's trials are in each status (every status present, zero or not)."""
        counts = dict.fromkeys(TRIAL_STATUSES, 0)
        for status, n in self._db.execute(
            "SELECT status, count(*) FROM trials WHERE run_id = ? GROUP BY status", (run_id,)
        ):
            counts[status] = n
        return counts

    def metrics(self, trial_id: int, name: str | None = None) -> list[tuple[int, str, float | None]]:
        """A trial's metrics as ``(step, name, value)`` ordered by name and step."""
        sql, args = "SELECT step, name, value FROM metrics WHERE trial_id = ?", [trial_id]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        return [tuple(r) for r in self._db.execute(sql + " ORDER BY name, step", args).fetchall()]  # type: ignore[misc]

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
        row = self._db.execute("SELECT * FROM reward_programs WHERE id = ?", (pid,)).fetchone()
        return ProgramRecord(**dict(row)) if row else None

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
        rows = self._db.execute("SELECT * FROM reward_programs WHERE parent_id = ? ORDER BY created, id", (pid,))
        return [ProgramRecord(**dict(r)) for r in rows.fetchall()]

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
            return int(cur.lastrowid)

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

    def candidates(self, run_id: str | None = None, program_id: str | None = None) -> list[dict[str, Any]]:
        """Candidates of a run or of a program, oldest first, JSON columns parsed."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if program_id is not None:
            where.append("program_id = ?")
            args.append(program_id)
        sql = "SELECT * FROM candidates" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        out = []
        for row in self._db.execute(sql, args).fetchall():
            d = dict(row)
            d["checks"] = json.loads(d.pop("checks_json")) if d["checks_json"] else None
            d["probe"] = json.loads(d.pop("probe_json")) if d["probe_json"] else None
            out.append(d)
        return out

    def find_program(self, prefix: str) -> ProgramRecord:
        """The program whose id starts with ``prefix`` (at least 6 characters); UserError otherwise."""
        if len(prefix) < 6:
            raise UserError(f"reward id {prefix!r} is too short; give at least 6 characters")
        rows = self._db.execute("SELECT * FROM reward_programs WHERE id LIKE ? LIMIT 2", (prefix + "%",)).fetchall()
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
                    origin: str | None = None) -> list[dict[str, Any]]:
        """Stored correction pairs, oldest first, optionally only those matching every given field."""
        where, args = [], []
        for column, value in (("family", family), ("card_id", card_id), ("rule", rule), ("origin", origin)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM corrections" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [dict(r) for r in self._db.execute(sql, args).fetchall()]

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
        return [_exchange(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def exchanges(self, run_id: str | None = None) -> list[ExchangeRecord]:
        """Every stored exchange, or one run's, oldest first."""
        if run_id is None:
            rows = self._db.execute("SELECT * FROM llm_exchanges ORDER BY id").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM llm_exchanges WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return [_exchange(r) for r in rows]

    def exchange(self, exchange_id: int) -> ExchangeRecord | None:
        row = self._db.execute("SELECT * FROM llm_exchanges WHERE id = ?", (exchange_id,)).fetchone()
        return _exchange(row) if row else None


def _exchange(row: sqlite3.Row) -> ExchangeRecord:
    data = dict(row)
    params_json, prompt_json, reply = data.pop("params_json"), data.pop("prompt_json"), data.pop("reply")
    return ExchangeRecord(
        **data,
        params=json.loads(params_json) if params_json else {},
        messages=json.loads(prompt_json),
        texts=json.loads(reply) if reply is not None else None,
    )


def _trial(row: sqlite3.Row) -> TrialRecord:
    data = dict(row)
    result_json = data.pop("result_json")
    return TrialRecord(**data, result=json.loads(result_json) if result_json else None)
