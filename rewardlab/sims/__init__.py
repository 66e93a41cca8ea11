"""Simulator adapters: make gymnasium envs from env cards, and what else a simulator can tell.

- :mod:`~rewardlab.sims.registry`: the names cards may use;
- :mod:`~rewardlab.sims.base`: the :class:`Simulator` interface, :func:`make_env` and
  :func:`verify_card` (a card checked against its live env, cached);
- one module per simulator (:mod:`~rewardlab.sims.mujoco`, :mod:`~rewardlab.sims.metaworld`).

The names below are imported on first use: :mod:`rewardlab.cards` imports the registry, and the
adapters import :mod:`rewardlab.cards`.
"""

from __future__ import annotations

from rewardlab.registry import lazy_exports

_LAZY = {
    "Simulator": "rewardlab.sims.base",
    "Policy": "rewardlab.sims.base",
    "make_env": "rewardlab.sims.base",
    "verify_card": "rewardlab.sims.base",
    "get_simulator": "rewardlab.sims.base",
    "register_simulator": "rewardlab.sims.registry",
    "simulator_names": "rewardlab.sims.registry",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_exports("rewardlab.sims", _LAZY)
