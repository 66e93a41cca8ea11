"""Shaper names -> shaper classes, imported on first use (like :mod:`rewardlab.sims.registry`).

Other packages add shapers with :func:`register_shaper` or the ``rewardlab.shapers`` entry-point
group (``name = "package.module:ShaperClass"``).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from rewardlab.errors import UserError

if TYPE_CHECKING:
    from rewardlab.shaping.base import Shaper

BUILTIN_SHAPERS: dict[str, str] = {
    "pbrs": "rewardlab.shaping.pbrs:PotentialShaping",
}
ENTRY_POINT_GROUP = "rewardlab.shapers"
_registered: dict[str, Any] = {}


def register_shaper(name: str, shaper: type[Shaper] | str) -> None:
    """Register a shaper class (or a ``module:Class`` path) under ``name``."""
    if name in BUILTIN_SHAPERS:
        raise ValueError(f"shaper {name!r} is built in; choose another name")
    _registered[name] = shaper


def shaper_names() -> list[str]:
    """Every shaper a reward source may name."""
    return sorted({*BUILTIN_SHAPERS, *_registered, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def check_shaper(name: str) -> None:
    """Raise :class:`ValueError` (a validation error in a spec) for an unknown shaper name."""
    known = shaper_names()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ValueError(f"unknown shaper {name!r}; {hint}known: {', '.join(known)}")


def get_shaper_class(name: str) -> type[Shaper]:
    """The class registered as ``name``.

    :raises UserError: unknown name, or its package is not installed
    """
    try:
        check_shaper(name)
    except ValueError as e:
        raise UserError(str(e)) from None
    target = _registered.get(name) or BUILTIN_SHAPERS.get(name)
    if target is None:
        target = next(ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name)
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except ImportError as e:
            raise UserError(f"shaper {name!r} is not installed ({e})") from None
    return target
