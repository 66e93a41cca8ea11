"""Shared fixtures. Every test process uses one torch thread (see training.limit_threads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampled-state caches go to a per-session temp dir, never the user's home."""
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def toy_card_path() -> Path:
    return FIXTURES / "toy-card.yaml"


@pytest.fixture
def llm_server():
    """A scripted OpenAI-compatible chat server on 127.0.0.1 (see tests/llm_server.py); script it with
    ``llm_server.script(("code", text), ("status", 429), ...)`` and point a client at ``llm_server.base_url``."""
    from llm_server import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        yield server
