"""Algorithm presets per simulator (``agents/<simulator>.yaml`` for the built-in ones, else what the
simulator adapter's ``presets()`` returns), in rl-zoo3's style: a ``default`` block per algorithm, then
per-env overrides keyed by the simulator's env id.

Keys other than ``n_envs``, ``normalize``, ``policy`` and ``randomization`` (domain randomisation
ranges of the training envs, :class:`~rewardlab.randomization.RandomizationRanges`) are passed to the
SB3 algorithm's constructor; ``policy_kwargs`` may name activation functions (``tanh``) and registered feature
extractors by string.
"""

from __future__ import annotations

from typing import Any

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.sims.base import get_simulator
from rewardlab.training.policies import resolve_extractor

#: The SB3 algorithms the ``sb3`` trainer runs: the one list every caller checks against (``reinforce`` is
#: rewardlab's neural REINFORCE, :mod:`rewardlab.training.reinforce`, not the tabular trainer's).
ALGORITHMS = ("ppo", "sac", "td3", "dqn", "reinforce")
#: Preset keys that configure the env, not the algorithm.
ENV_KEYS = ("n_envs", "normalize", "policy", "randomization")
_ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "leaky_relu", "silu")


def load_preset(card: EnvCard, algo: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The algorithm's hyperparameters for a card: ``default`` block, then the env's, then ``overrides``.

    :param card: the env card (its simulator's adapter gives the presets)
    :param algo: one of :data:`ALGORITHMS`
    :param overrides: keys that replace the preset's
    :raises UserError: unknown algorithm, or no preset for the simulator or algorithm
    """
    if algo not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGORITHMS)}")
    presets = get_simulator(card.simulator).presets()
    if not presets:
        raise UserError(f"no algorithm presets for the {card.simulator} simulator (agents/{card.simulator}.yaml)")
    if algo not in presets:
        raise UserError(f"the {card.simulator} presets have no {algo} preset")
    params = dict(presets[algo].get("default", {}))
    params.update(presets[algo].get(card.env_id, {}))
    params.update(overrides or {})
    return params


def policy_kwargs(raw: dict[str, Any] | None) -> dict[str, Any]:
    """``policy_kwargs`` with names resolved: activation functions and registered feature extractors."""
    import torch.nn as nn

    kwargs = dict(raw or {})
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        table = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU,
                 "silu": nn.SiLU}
        if act.lower() not in table:
            raise UserError(f"unknown activation_fn {act!r}; expected one of {', '.join(_ACTIVATIONS)}")
        kwargs["activation_fn"] = table[act.lower()]
    if "features_extractor_class" in kwargs:
        kwargs["features_extractor_class"] = resolve_extractor(kwargs["features_extractor_class"])
    return kwargs


def minimum_steps(algo: str, params: dict[str, Any], episode_steps: int | None = None) -> tuple[int, str]:
    """The smallest budget that trains at all, and why: PPO updates once per rollout of
    ``n_steps × n_envs`` transitions; REINFORCE once ``episodes_per_update`` episodes are complete, which
    ``⌈episodes_per_update / n_envs⌉ × n_envs × episode_steps`` steps guarantee (episodes may end sooner);
    SAC, TD3 and DQN start learning after ``learning_starts`` (which
    :func:`rewardlab.training.sb3.build_agent` caps to a fifth of the budget, at least 100).

    :param episode_steps: the card's episode length (REINFORCE; one step where not given)
    """
    n_envs = int(params.get("n_envs", 1))
    if algo == "reinforce":
        episodes = int(params.get("episodes_per_update", 1))
        length = episode_steps or 1
        rounds = -(-episodes // n_envs)
        return (rounds * n_envs * length, f"one reinforce update of the sb3 trainer ({episodes} complete "
                f"episode(s) of up to {length} steps on {n_envs} env(s))")
    if algo == "ppo":
        n_steps = int(params.get("n_steps", 2048))
        return n_steps * n_envs, f"one PPO rollout (n_steps {n_steps} x {n_envs} envs)"
    return 101, f"{algo.upper()}'s warm-up (learning_starts, at least 100 steps)"
