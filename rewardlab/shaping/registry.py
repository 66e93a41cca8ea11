"""Shaper names -> shaper classes, imported on first use (see :class:`rewardlab.registry.Registry`).

Other packages add shapers with :func:`register_shaper` or the ``rewardlab.shapers`` entry-point group
(``name = "package.module:ShaperClass"``).
"""

from __future__ import annotations

from typing import Any

from rewardlab.errors import UserError
from rewardlab.registry import Registry

#: Registered shapers; entries are ``rewardlab.shaping.base.Shaper`` subclasses.
SHAPERS: Registry[Any] = Registry("shaper", {"pbrs": "rewardlab.shaping.pbrs:PotentialShaping",
                                            "exprd": "rewardlab.shaping.exprd:ExplicableRewardDesign",
                                            "craft": "rewardlab.shaping.exprd:HandcraftedLandmarks",
                                            "explors": "rewardlab.shaping.explors:ExplorationGuidedShaping",
                                            "explob": "rewardlab.shaping.explors:ExplorationBonus",
                                            "selfrs": "rewardlab.shaping.explors:SelfRewardShaping",
                                            "sors": "rewardlab.shaping.sors:SelfSupervisedRewardShaping",
                                            "expadard": "rewardlab.shaping.expadard:AdaptiveRewardDesign",
                                            "invariance": "rewardlab.shaping.expadard:InvarianceBaseline"},
                                           group="rewardlab.shapers")


def register_shaper(name: str, shaper: Any) -> None:
    """Register a shaper class (or a ``module:Class`` path) under ``name``."""
    SHAPERS.register(name, shaper)


def shaper_names() -> list[str]:
    """Every shaper a reward source may name."""
    return SHAPERS.names()


def check_shaper(name: str) -> None:
    """Raise :class:`ValueError` (a validation error in a spec) for an unknown shaper name."""
    try:
        SHAPERS.check(name)
    except UserError as e:
        raise ValueError(str(e)) from None

