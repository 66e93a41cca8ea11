"""Name registries: simulators, trainers, shapers, policies and feature extractors are all found the
same way, by a name a card, a spec or a flag gives.

An entry is a ``module:attribute`` path imported on first use (so a missing optional package only
fails when its entry is used), or an object registered at run time with :meth:`Registry.register`;
installed packages add entries through an entry-point group (``name = "package.module:Class"``), so
nothing in rewardlab changes when a new one is added. Unknown names get a "did you mean".

Entries registered at run time live in one process; worker processes see built-in and entry-point
entries only (register through an entry point for multi-process runs).

It also holds :func:`lazy_exports`, the lazy ``__getattr__`` of packages whose ``__init__`` must not
import their heavy modules.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from rewardlab.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind.

    :param kind: what the entries are, for messages (``simulator``, ``trainer``)
    :param builtin: name -> ``module:attribute`` of the entries rewardlab ships
    :param group: the entry-point group other packages register under
    :param instantiate: call the attribute once when it is loaded (adapters, trainers) rather than
        return it (classes: shapers, policies)
    :param reserved: names that are not entries but must not be registered (SB3's own policy names)
    """

    def __init__(self, kind: str, builtin: dict[str, str], group: str, instantiate: bool = False,
                 reserved: tuple[str, ...] = ()):
        self.kind = kind
        self.builtin = dict(builtin)
        self.group = group
        self.instantiate = instantiate
        self.reserved = reserved
        self._registered: dict[str, Any] = {}
        self._loaded: dict[str, T] = {}

    def register(self, name: str, entry: T | str) -> None:
        """Add an entry (an object, or a ``module:attribute`` path) under ``name``, or replace one
        registered before.

        :raises ValueError: the name is built in or reserved
        """
        if name in self.builtin or name in self.reserved:
            raise ValueError(f"{self.kind} {name!r} is built in; choose another name")
        self._registered[name] = entry
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        """Remove an entry registered at run time (tests, notebooks)."""
        self._registered.pop(name, None)
        self._loaded.pop(name, None)

    def _entry_points(self) -> dict[str, str]:
        return {ep.name: ep.value for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every name that can be used: built in, registered, or from installed packages."""
        return sorted({*self.builtin, *self._registered, *self._entry_points()})

    def check(self, name: str) -> None:
        """Raise :class:`UserError` with a "did you mean" when ``name`` is not an entry."""
        known = self.names()
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise UserError(f"unknown {self.kind} {name!r}; {hint}known: {', '.join(known) or 'none'}")

    def get(self, name: str) -> T:
        """The entry called ``name``, imported (and instantiated) on first use.

        :raises UserError: an unknown name, or its package is not installed
        """
        if name in self._loaded:
            return self._loaded[name]
        self.check(name)
        target = self._registered.get(name) or self.builtin.get(name) or self._entry_points()[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            try:
                target = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as e:
                raise UserError(f"{self.kind} {name!r} is not installed ({e})") from None
            if self.instantiate:
                target = target()
        self._loaded[name] = target
        return target


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) the first time ``name`` is
    read from ``package``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
