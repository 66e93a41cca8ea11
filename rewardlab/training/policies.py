"""Name registries for SB3 policy classes and feature extractors, so a preset or a spec can name one
(``policy: MoEPolicy``, ``policy_kwargs: {features_extractor_class: moe}``) instead of importing it.

SB3's own policy names (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``) pass through untouched.
Entries are ``module:attribute`` paths imported on first use, or classes registered at run time;
other packages may add entries through the ``rewardlab.policies`` and ``rewardlab.extractors``
entry-point groups.
"""

from __future__ import annotations

import inspect
from typing import Any

from rewardlab.errors import UserError, closest
from rewardlab.registry import Registry

SB3_POLICY_NAMES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
POLICIES: Registry[type] = Registry("policy", {}, group="rewardlab.policies", reserved=SB3_POLICY_NAMES)
EXTRACTORS: Registry[type] = Registry("feature extractor", {"moe": "rewardlab.moe.sb3:MoEExtractor"},
                                      group="rewardlab.extractors")


def register_policy(name: str, policy: type | str) -> None:
    """Register an SB3 policy class (or ``module:Class``) under ``name``."""
    POLICIES.register(name, policy)


def register_extractor(name: str, extractor: type | str) -> None:
    """Register an SB3 ``BaseFeaturesExtractor`` subclass (or ``module:Class``) under ``name``."""
    EXTRACTORS.register(name, extractor)


def resolve_policy(name: str | type) -> str | type:
    """A preset's ``policy``: SB3's own names as they are, registered names as their class."""
    if not isinstance(name, str) or name in SB3_POLICY_NAMES:
        return name
    return POLICIES.get(name)


def resolve_extractor(name: str | type) -> type:
    """A ``features_extractor_class`` given by registered name, as its class."""
    return name if isinstance(name, type) else EXTRACTORS.get(name)


def check_extractor_kwargs(extractor: type, kwargs: dict[str, Any]) -> None:
    """Refuse ``features_extractor_kwargs`` the extractor does not take (with a "did you mean"), then let
    it check the values where it can (a ``check_kwargs`` classmethod) — while validating, so a spec with a
    mistyped key or a meaningless value is refused before its run exists, not trial by trial.

    :param extractor: the ``features_extractor_class``
    :param kwargs: its ``features_extractor_kwargs``
    :raises UserError: an unknown key or a value the extractor refuses
    """
    params = [p for p in inspect.signature(extractor).parameters.values()
              if p.name != "observation_space"]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        names = [p.name for p in params]
        for key in kwargs:
            if key not in names:
                guess = closest(key, names)
                hint = f" (did you mean {guess!r}?)" if guess else ""
                raise UserError(f"features_extractor_kwargs: {extractor.__name__} takes {', '.join(names)}, "
                                f"not {key!r}{hint}")
    check = getattr(extractor, "check_kwargs", None)
    if check is not None:
        try:
            check(**kwargs)
        except (UserError, ValueError, TypeError) as e:
            raise UserError(f"features_extractor_kwargs: {e}") from None
