"""Reward shapers: what is added to a base reward at training time (PBRS, and the reward-design
thesis' EXPRD, ExpAdaRD and ExploRS as they are added).

- :mod:`~rewardlab.shaping.registry`: shaper names, checked when a spec or ``--shaper`` names one;
- :mod:`~rewardlab.shaping.base`: the :class:`Shaper` interface (what a shaper needs from the task,
  the reward wrapper it adds, the training callbacks it needs);
- :mod:`~rewardlab.shaping.pbrs`: potential-based reward shaping (Ng, Harada & Russell, 1999).
- :mod:`~rewardlab.shaping.abstraction`: an abstraction over card fields, its abstract MDP sampled from the
  simulator with the scripted expert, and the designed reward as a program (EXPRD/ExpAdaRD on continuous tasks).

Names are imported on first use: :mod:`rewardlab.sources` imports the registry, the shapers import
the wrappers.
"""

from __future__ import annotations

from rewardlab.registry import lazy_exports

_LAZY = {
    "Shaper": "rewardlab.shaping.base",
    "make_shaper": "rewardlab.shaping.base",
    "register_shaper": "rewardlab.shaping.registry",
    "shaper_names": "rewardlab.shaping.registry",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_exports("rewardlab.shaping", _LAZY)
