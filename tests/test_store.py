"""The run store: schema, WAL mode, trial life cycle, programs and lineage, atomic writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rewardlab.errors import UserError
from rewardlab.runs.spec import TrialSpec
from rewardlab.runs.store import SCHEMA_VERSION, RunStore, program_id

TASK = "mujoco/InvertedPendulum-v5"


def _trials(seeds: tuple[int, ...] | list[int] = (0, 1), reward: str = "env") -> list[TrialSpec]:
    return [TrialSpec(TASK, reward, reward, "ppo", s, 1000) for s in seeds]


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

    result = {"eval": {"return_env": [1.0, 2.0]}, "steps": 1000, "curve": []}
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
    store.mark_done(trial.id, {"steps": 1}, [(1, "return_env", 1.0)])
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
        store.mark_done(trial.id, {"steps": 1}, [(1, "return_env", 1.0), (2, "return_env", bad_value)])
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
from rewardlab.runs.store import RunStore
s = RunStore({str(path)!r})
print("ready", flush=True)
while True:
    for t in s.trials("r-1"):
        s.mark_running(t.id, "d")
        s.mark_done(t.id, {{"steps": t.seed}}, [(i, "return_env", float(i)) for i in range(20)])
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    with RunStore(path) as s:
        for t in s.trials("r-1"):
            n_metrics = len(s.metrics(t.id))
            if t.status == "done":
                assert t.result == {"steps": t.seed} and n_metrics == 20
            else:
                assert t.status in ("pending", "running") and t.result is None and n_metrics == 0
