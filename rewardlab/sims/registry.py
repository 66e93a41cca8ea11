"""The simulator registry: a card's ``simulator`` name -> the adapter that makes its envs.

Built-in adapters are imported lazily by module path, so a card for a simulator that is not installed
(ManiSkill3) only fails when it is used. Other packages add simulators with :func:`register_simulator`
or through the ``rewardlab.simulators`` entry-point group (``name = "package.module:AdapterClass"``),
without touching rewardlab.

This module sits below :mod:`rewardlab.cards` (which checks a card's simulator name here); the
adapters themselves (:mod:`rewardlab.sims.base`) sit above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardlab.registry import Registry

if TYPE_CHECKING:
    from rewardlab.sims.base import Simulator

#: Registered simulators; entries are adapter classes, instantiated once on first use.
SIMULATORS: Registry[Simulator] = Registry(
    "simulator",
    {"mujoco": "rewardlab.sims.mujoco:MujocoSimulator", "metaworld": "rewardlab.sims.metaworld:MetaWorldSimulator"},
    group="rewardlab.simulators", instantiate=True,
)


def register_simulator(name: str, adapter: Simulator | str) -> None:
    """Register a simulator adapter (an instance, or ``module:Class``) under ``name``."""
    SIMULATORS.register(name, adapter)


def simulator_names() -> list[str]:
    """Every simulator a card may name: built in, registered, or from installed packages."""
    return SIMULATORS.names()


def check_simulator_name(name: str) -> None:
    """Raise :class:`UserError` (with a "did you mean") when no simulator is registered as ``name``."""
    SIMULATORS.check(name)


def get_simulator(name: str) -> Simulator:
    """The adapter registered as ``name``, imported on first use.

    :raises UserError: unknown name, or its package is not installed
    """
    return SIMULATORS.get(name)
