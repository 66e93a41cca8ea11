"""The run store: schema, WAL mode, trial life cycle, programs and lineage, atomic writes."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rewardlab.errors import UserError
from rewardlab.store import SCHEMA_VERSION, NewTrial, RunStore, program_id
from rewardlab.types import EvalResult, TrialResult

TASK = "mujoco/InvertedPendulum-v5"


def _trials(seeds: tuple[int, ...] | list[int] = (0, 1), reward: str = "env") -> list[NewTrial]:
    return [NewTrial(f"{TASK}|{reward}|ppo|{s}", TASK, reward, "ppo", s, steps=1000) for s in seeds]


def _result(steps: int, env_return: tuple[float, ...] = ()) -> TrialResult:
    return TrialResult(steps=steps, eval=EvalResult(env_return=list(env_return)))


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    with RunStore(tmp_path / "rewardlab.sqlite") as s:
        yield s


def test_store_uses_wal_and_foreign_keys(store: RunStore) -> None:
    assert store.journal_mode == "wal"
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version == SCHEMA_VERSION
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "runs", "trials", "reward_programs", "metrics", "llm_exchanges"} <= tables


def test_schema_creation_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with RunStore(path) as first:
        first.create_run("r-1", "r", "name: r\n")
    with RunStore(path) as second:
        assert second.get_run("r-1") is not None
        assert second._db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(UserError, match="newer than this rewardlab"):
        RunStore(path)


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(UserError, match="cannot be opened"):
        RunStore(path)


def test_trial_life_cycle_round_trip(store: RunStore, tmp_path: Path) -> None:
    run = store.create_run("tiny-20250101-000000", "tiny", "name: tiny\n")
    assert run.status == "running" and run.spec_name == "tiny"
    assert store.add_trials(run.id, _trials()) == 2
    assert store.add_trials(run.id, _trials([0, 1, 2])) == 1  # existing keys are kept, new ones added
    first, second, third = store.trials(run.id)
    assert first.status == "pending" and first.key == f"{TASK}|env|ppo|0" and first.seed == 0

    store.mark_running(first.id, tmp_path / "t0")
    running = store.trial(first.id)
    assert running is not None and running.status == "running" and running.started
    assert running.dir == str(tmp_path / "t0")

    result = _result(1000, (1.0, 2.0))
    store.mark_done(first.id, result, [(500, "return_env", 1.5), (1000, "return_env", 2.5), (1000, "success", 1.0)])
    done = store.trial(first.id)
    assert done is not None and done.status == "done" and done.result == result and done.finished
    assert store.metrics(first.id) == [(500, "return_env", 1.5), (1000, "return_env", 2.5), (1000, "success", 1.0)]
    assert store.metrics(first.id, "success") == [(1000, "success", 1.0)]

    store.mark_running(second.id, tmp_path / "t1")
    store.mark_failed(second.id, "ValueError: boom")
    failed = store.trial(second.id)
    assert failed is not None and failed.status == "failed" and failed.error == "ValueError: boom"

    store.mark_running(third.id, tmp_path / "t2")
    assert store.status_counts(run.id) == {"pending": 0, "running": 1, "done": 1, "failed": 1}
    assert store.reset_interrupted(run.id) == 1
    assert store.trial(third.id).status == "pending"  # type: ignore[union-attr]
    assert [t.id for t in store.trials(run.id, "done")] == [first.id]


def test_rerunning_a_trial_clears_its_old_outcome(store: RunStore, tmp_path: Path) -> None:
    run = store.create_run("r-1", "r", "")
    store.add_trials(run.id, _trials([0]))
    (trial,) = store.trials(run.id)
    store.mark_running(trial.id, tmp_path)
    store.mark_done(trial.id, _result(1), [(1, "return_env", 1.0)])
    store.mark_running(trial.id, tmp_path)
    again = store.trial(trial.id)
    assert again is not None and again.result is None and again.finished is None
    assert store.metrics(trial.id) == []


def test_latest_run_is_per_spec_name(store: RunStore) -> None:
    store.create_run("a-1", "a", "")
    store.create_run("b-1", "b", "")
    store.create_run("a-2", "a", "")
    assert store.latest_run("a").id == "a-2"  # type: ignore[union-attr]
    assert store.latest_run("b").id == "b-1"  # type: ignore[union-attr]
    assert store.latest_run("c") is None
    assert [r.id for r in store.list_runs()] == ["a-2", "b-1", "a-1"]
    with pytest.raises(UserError, match="already exists"):
        store.create_run("a-1", "a", "")


def test_reward_programs_are_stored_once_with_lineage(store: RunStore) -> None:
    parent = store.add_program("def compute_dense_reward(self, action): return 0\n", "llm", TASK)
    child = store.add_program("def compute_dense_reward(self, action): return 1\n", "llm", TASK, parent_id=parent)
    assert store.add_program("def compute_dense_reward(self, action): return 0\n", "file") == parent
    assert parent == program_id("def compute_dense_reward(self, action): return 0\n")
    assert store._db.execute("SELECT count(*) FROM reward_programs").fetchone()[0] == 2
    assert [p.id for p in store.lineage(child)] == [child, parent]
    assert store.get_program(parent).origin == "llm"  # type: ignore[union-attr]
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        store.add_program("x = 1\n", "llm", parent_id="0" * 64)


def test_a_failed_write_leaves_nothing_half_written(store: RunStore) -> None:
    run = store.create_run("r-1", "r", "")
    store.add_trials(run.id, _trials([0]))
    (trial,) = store.trials(run.id)
    store.mark_running(trial.id, "d")
    with pytest.raises(TypeError):  # the metrics fail after the delete has run inside the transaction
        bad_value: Any = object()
        store.mark_done(trial.id, _result(1), [(1, "return_env", 1.0), (2, "return_env", bad_value)])
    after = store.trial(trial.id)
    assert after is not None and after.status == "running" and after.result is None
    assert store.metrics(trial.id) == []


def test_a_killed_writer_leaves_the_store_readable(tmp_path: Path) -> None:
    """A process killed while it writes trials in a loop: every trial is whole, before or after."""
    path = tmp_path / "db.sqlite"
    with RunStore(path) as s:
        s.create_run("r-1", "r", "")
        s.add_trials("r-1", _trials(list(range(50))))
    script = f"""
import sys
from rewardlab.store import RunStore
from rewardlab.types import TrialResult
s = RunStore({str(path)!r})
print("ready", flush=True)
while True:
    for t in s.trials("r-1"):
        s.mark_running(t.id, "d")
        s.mark_done(t.id, TrialResult(steps=t.seed), [(i, "return_env", float(i)) for i in range(20)])
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    with RunStore(path) as s:
        for t in s.trials("r-1"):
            n_metrics = len(s.metrics(t.id))
            if t.status == "done":
                assert t.result is not None and t.result.steps == t.seed and n_metrics == 20
            else:
                assert t.status in ("pending", "running") and t.result is None and n_metrics == 0


# -- migrations: a store written by rewardlab 0.1.0 (schema 1) opens and upgrades with nothing lost --------
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return [tuple(r) for r in db.execute(sql)]


def test_a_version_1_store_upgrades_in_place_with_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "rewardlab.sqlite"
    path.write_bytes(FIXTURE.read_bytes())
    assert _rows(path, "SELECT max(version) FROM schema_version") == [(1,)]
    tables = ("reward_programs", "metrics", "llm_exchanges", "candidates", "corrections")
    before = {t: _rows(path, f"SELECT * FROM {t} ORDER BY rowid") for t in tables}
    trials_before = _rows(path, "SELECT id, run_id, key, status, result_json, error, program_id FROM trials ORDER BY id")
    runs_before = _rows(path, "SELECT id, spec_name, spec_yaml, created, status FROM runs ORDER BY id")
    assert any(status == "running" for *_, status in runs_before)  # the fixture has a killed run

    with RunStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        runs = {r.id: r for r in store.list_runs()}
        for run_id, spec_name, spec_yaml, created, status in runs_before:
            run = runs[run_id]
            assert (run.spec_name, run.spec_yaml, run.created) == (spec_name, spec_yaml, created)
            assert run.status == ("interrupted" if status == "running" else status)  # 0.1.0 left killed runs 'running'
        done = [t for r in runs for t in store.trials(r) if t.status == "done"]
        assert done and all(t.result is not None and t.result.eval.env_return for t in done)
        assert all(t.steps == 1024 for t in store.trials("fixture-20261130-033430"))  # the budget, from the spec
        assert store.corrections() and store.candidates() and store.exchanges()
        root = store.lineage_tree(store.candidates()[0].program_id or "")
        assert root.children  # the refined program is still the child of the generated one

    after = {t: _rows(path, f"SELECT * FROM {t} ORDER BY rowid") for t in tables}
    assert after == before
    trials_after = _rows(path, "SELECT id, run_id, key, status, result_json, error, program_id FROM trials ORDER BY id")
    assert [t[:3] + t[4:] for t in trials_after] == [t[:3] + t[4:] for t in trials_before]
    # a backup of the version-1 file was kept, and opening again changes nothing
    backup = path.with_name(path.name + ".v1.bak")
    assert _rows(backup, "SELECT max(version) FROM schema_version") == [(1,)]
    with RunStore(path) as again:
        assert again.schema_version == SCHEMA_VERSION
    assert not path.with_name(path.name + ".v2.bak").exists()


def test_every_migration_is_numbered_in_order() -> None:
    from rewardlab.store import MIGRATIONS

    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version


# -- the run lease: one process per run -----------------------------------------------------------------
def test_a_run_held_by_a_live_process_is_refused_and_a_dead_holders_is_taken_over(tmp_path: Path) -> None:
    from rewardlab.store import RunBusyError

    path = tmp_path / "db.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", f"""
from rewardlab.store import RunStore
s = RunStore({str(path)!r})
s.create_run("r-1", "r", "", hold=True)
print("held", flush=True)
input()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with RunStore(path) as store:
            with pytest.raises(RunBusyError, match=f"process {holder.pid}"):
                store.acquire_run("r-1")
            holder.kill()
            holder.wait()
            run = store.acquire_run("r-1")  # its holder is gone: taken over
            assert run.holder_pid == os.getpid() and run.status == "running"
            assert store.heartbeat("r-1")
            store.set_run_status("r-1", "interrupted", "stopped by a test")
            run = store.get_run("r-1")
            assert run is not None and run.holder_pid is None and run.reason == "stopped by a test"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def test_a_stale_heartbeat_from_another_host_frees_the_lease(store: RunStore) -> None:
    from rewardlab.store import RunBusyError

    store.create_run("r-1", "r", "")
    store._db.execute("UPDATE runs SET holder_pid = 1, holder_host = 'elsewhere', heartbeat = ? WHERE id = 'r-1'",
                      (datetime.now(timezone.utc).isoformat(),))
    with pytest.raises(RunBusyError, match="elsewhere"):
        store.acquire_run("r-1")
    old = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    store._db.execute("UPDATE runs SET heartbeat = ? WHERE id = 'r-1'", (old,))
    assert store.acquire_run("r-1").holder_host == socket.gethostname()


# -- SQLite failures are one line, and nothing half written ---------------------------------------------
def test_a_full_disk_is_one_line_and_rolls_back(store: RunStore) -> None:
    from rewardlab.store import StoreError

    run = store.create_run("r-1", "r", "")
    store.add_trials(run.id, _trials([0]))
    (trial,) = store.trials(run.id)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(StoreError, match="full.*free disk space") as caught:
        store.mark_done(trial.id, _result(1), [(i, "return_env", float(i)) for i in range(5000)])
    assert "\n" not in str(caught.value)
    after = store.trial(trial.id)
    assert after is not None and after.status == "pending" and store.metrics(trial.id) == []


def test_a_damaged_store_is_one_line(tmp_path: Path) -> None:
    from rewardlab.store import StoreError

    path = tmp_path / "db.sqlite"
    with RunStore(path) as s:
        s.create_run("r-1", "r", "")
        s.add_trials("r-1", _trials(list(range(200))))
        s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(2 * page, len(data), page):  # scribble over every page after the schema
        data[i + 8 : i + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="malformed|not a database|damaged") as caught:
        with RunStore(path) as s:
            s.trials("r-1")
    assert "\n" not in str(caught.value)


def test_lineage_tree_holds_every_revision_with_its_candidates(store: RunStore) -> None:
    root = store.add_program("def compute_dense_reward(self, action): return 0\n", "llm", TASK)
    child = store.add_program("def compute_dense_reward(self, action): return 1\n", "llm", TASK, parent_id=root)
    grandchild = store.add_program("def compute_dense_reward(self, action): return 2\n", "llm", TASK, parent_id=child)
    store.create_run("g-1", "generate", "")
    row = store.add_candidate("g-1", child, 0, 0, 0, "checked")
    store.update_candidate(row, status="trained", score=0.5)
    tree = store.lineage_tree(grandchild)
    assert tree.program.id == root and tree.status == "stored"
    (node,) = tree.children
    assert node.program.id == child and node.status == "trained" and node.best_score == 0.5
    assert [c.program.id for c in node.children] == [grandchild]


def test_non_finite_numbers_in_a_result_survive_the_store(store: RunStore) -> None:
    """A result with NaN/inf (an empty evaluation mean, a diverged return) is stored and read back,
    not turned into null and then refused."""
    run = store.create_run("r-1", "r", "")
    store.add_trials(run.id, _trials([0]))
    (trial,) = store.trials(run.id)
    result = TrialResult(steps=1, wall_s=float("nan"), eval=EvalResult(env_return=[float("inf"), 1.0]))
    store.mark_done(trial.id, result)
    back = store.trial(trial.id)
    assert back is not None and back.result is not None
    assert back.result.eval.env_return[0] == float("inf") and back.result.wall_s != back.result.wall_s
