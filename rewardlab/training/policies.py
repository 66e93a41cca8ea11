"""Name registries for SB3 policy classes and feature extractors, so a preset or a spec can name one
(``policy: MoEPolicy``, ``policy_kwargs: {features_extractor_class: moe}``) instead of importing it.

SB3's own policy names (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``) pass through untouched.
Entries are ``module:attribute`` paths imported on first use, or classes registered at run time;
other packages may add entries through the ``rewardlab.policies`` and ``rewardlab.extractors``
entry-point groups.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from rewardlab.errors import UserError

SB3_POLICY_NAMES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
_policies: dict[str, Any] = {}
_extractors: dict[str, Any] = {}
_GROUPS = {"policy": "rewardlab.policies", "feature extractor": "rewardlab.extractors"}


def register_policy(name: str, policy: type | str) -> None:
    """Register an SB3 policy class (or ``module:Class``) under ``name``."""
    if name in SB3_POLICY_NAMES:
        raise ValueError(f"{name!r} is one of SB3's own policy names; choose another")
    _policies[name] = policy


def register_extractor(name: str, extractor: type | str) -> None:
    """Register an SB3 ``BaseFeaturesExtractor`` subclass (or ``module:Class``) under ``name``."""
    _extractors[name] = extractor


def _lookup(table: dict[str, Any], kind: str, name: str) -> type:
    found = dict(table)
    found.update({ep.name: ep.value for ep in entry_points(group=_GROUPS[kind]) if ep.name not in found})
    if name not in found:
        near = difflib.get_close_matches(name, list(found), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        known = ", ".join(sorted(found)) or "none registered"
        raise UserError(f"unknown {kind} {name!r}{hint} (known: {known})")
    target = found[name]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise UserError(f"{kind} {name!r} cannot be loaded from {found[name]!r}: {e}") from None
        table[name] = target
    return target


def resolve_policy(name: str | type) -> str | type:
    """A preset's ``policy``: SB3's own names as they are, registered names as their class."""
    if not isinstance(name, str) or name in SB3_POLICY_NAMES:
        return name
    return _lookup(_policies, "policy", name)


def resolve_extractor(name: str | type) -> type:
    """A ``features_extractor_class`` given by registered name, as its class."""
    return name if isinstance(name, type) else _lookup(_extractors, "feature extractor", name)
