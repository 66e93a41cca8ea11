"""Helpers shared by the runner's and the Ray backend's subprocess tests: a tiny spec, the CLI as a
subprocess, and the store read the way anyone else would read it mid-run."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import yaml

TASK = "mujoco/InvertedPendulum-v5"
REPO = Path(__file__).resolve().parents[1]


def write_spec(folder: Path, description: str = "Runner test: two rewards, two seeds, a tiny budget.",
               **overrides: object) -> Path:
    """``folder/tiny.yaml``: InvertedPendulum PPO, rewards env and reference, seeds 0 and 1, 2048 steps."""
    spec = {
        "name": "tiny",
        "description": description,
        "tasks": [TASK],
        "rewards": ["env", "reference"],
        "algorithms": ["ppo"],
        "seeds": [0, 1],
        "budget": {"steps": 2048},
        "evaluation": {"episodes": 2},
        "workers": 2,
        **overrides,
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rewardlab", *args]


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "120"}


def read_trials(db: Path) -> list[dict]:
    """The trials table, read without the store (it must be readable by anyone, mid-run)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM trials ORDER BY id")]
