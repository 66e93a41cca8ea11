"""The simulator registry: a card's ``simulator`` name -> the adapter that makes its envs.

Built-in adapters are imported lazily by module path, so a card for a simulator that is not installed
(ManiSkill3) only fails when it is used. Other packages add simulators with
:func:`register_simulator` or through the ``rewardlab.simulators`` entry-point group
(``name = "package.module:AdapterClass"``), without touching rewardlab.

This module sits below :mod:`rewardlab.cards` (which checks a card's simulator name here); the
adapters themselves (:mod:`rewardlab.sims.base`) sit above it.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from rewardlab.errors import UserError

if TYPE_CHECKING:
    from rewardlab.sims.base import Simulator

#: Built-in simulators: name -> ``module:class``.
BUILTIN_SIMULATORS: dict[str, str] = {
    "mujoco": "rewardlab.sims.mujoco:MujocoSimulator",
    "metaworld": "rewardlab.sims.metaworld:MetaWorldSimulator",
}
ENTRY_POINT_GROUP = "rewardlab.simulators"

_registered: dict[str, Any] = {}
_loaded: dict[str, Simulator] = {}


def register_simulator(name: str, adapter: Simulator | str) -> None:
    """Register a simulator under ``name``: an adapter instance or a ``module:Class`` path.

    :raises ValueError: the name is taken by a built-in simulator
    """
    if name in BUILTIN_SIMULATORS:
        raise ValueError(f"simulator {name!r} is built in; choose another name")
    _registered[name] = adapter
    _loaded.pop(name, None)


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def simulator_names() -> list[str]:
    """Every simulator a card may name: built in, registered, or from installed packages."""
    return sorted({*BUILTIN_SIMULATORS, *_registered, *_entry_points()})


def check_simulator_name(name: str) -> None:
    """Raise :class:`UserError` (with a "did you mean") when no simulator is registered as ``name``."""
    known = simulator_names()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UserError(f"simulator {name!r} is not registered; {hint}known: {', '.join(known)}")


def get_simulator(name: str) -> Simulator:
    """The adapter registered as ``name``, imported on first use.

    :raises UserError: unknown name, or its package is not installed
    """
    if name in _loaded:
        return _loaded[name]
    check_simulator_name(name)
    target = _registered.get(name) or BUILTIN_SIMULATORS.get(name) or _entry_points()[name]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(f"simulator {name!r} is not installed ({e})") from None
        target = getattr(module, attr)()
    _loaded[name] = target
    return target
