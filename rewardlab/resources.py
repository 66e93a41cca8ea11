"""Locate the data folders shipped with rewardlab (``envs/``, ``prompts/``, ``agents/``, ``experiments/``).

This is the one place that resolves them: from an installed wheel they live in ``rewardlab/_data/``,
from a source checkout at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCE_NAMES = ("envs", "prompts", "agents", "experiments")


def resource_dir(name: str) -> Path:
    """Return the folder holding one kind of shipped data.

    :param name: one of ``envs``, ``prompts``, ``agents``, ``experiments``
    """
    if name not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {RESOURCE_NAMES}")
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rewardlab's {name}/ folder is missing from the installation")
