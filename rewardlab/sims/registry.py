"""The simulator registry: a card's ``simulator`` name -> the adapter that makes its envs.

Built-in adapters are imported lazily by module path, so a card for a simulator that is not installed
(ManiSkill3) only fails when it is used. Other packages add simulators with :func:`register_simulator`
or through the ``rewardlab.simulators`` entry-point group (``name = "package.module:AdapterClass"``),
without touching rewardlab.

This module sits below :mod:`rewardlab.cards` (which checks a card's simulator name here) and knows
no adapter class; :func:`rewardlab.sims.base.get_simulator` returns the adapter, typed.
"""

from __future__ import annotations

from typing import Any

from rewardlab.registry import Registry

#: Registered simulators; entries are adapter classes (``rewardlab.sims.base.Simulator``), instantiated
#: once on first use.
SIMULATORS: Registry[Any] = Registry(
    "simulator",
    {"mujoco": "rewardlab.sims.mujoco:MujocoSimulator", "metaworld": "rewardlab.sims.metaworld:MetaWorldSimulator",
     "gridworld": "rewardlab.sims.gridworld:GridworldSimulator",
     "household": "rewardlab.sims.household:HouseholdSimulator",
     "maniskill": "rewardlab.sims.maniskill:ManiSkillSimulator"},
    group="rewardlab.simulators", instantiate=True,
)


def register_simulator(name: str, adapter: Any) -> None:
    """Register a simulator adapter (an instance, or ``module:Class``) under ``name``."""
    SIMULATORS.register(name, adapter)


def simulator_names() -> list[str]:
    """Every simulator a card may name: built in, registered, or from installed packages."""
    return SIMULATORS.names()


def check_simulator_name(name: str) -> None:
    """Raise :class:`UserError` (with a "did you mean") when no simulator is registered as ``name``."""
    SIMULATORS.check(name)

