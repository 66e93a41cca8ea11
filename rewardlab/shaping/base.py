"""The shaper interface: what a shaper needs from the task, the reward wrapper it adds, and the
training callbacks it needs.

Stateless shaping results (EXPRD's designed table) are emitted as reward programs; shapers that keep
state across steps (PBRS's previous potential, ExploRS's counts, ExpAdaRD's learner snapshots) live
in a ``VecEnv`` wrapper and callbacks, made here per trial. A shaper declares the *capabilities* it
needs (``tabular_model``, ``expert_policy``, ``learner_policy``, ``abstraction``); the simulator
adapter says which a task provides, and a mismatch is one clear line before anything trains.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.vec_env import VecEnv

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.registry import SHAPERS
from rewardlab.state import StateExtractor

#: Capabilities a shaper may need, in words for messages.
CAPABILITIES = {
    "tabular_model": "a tabular model",
    "expert_policy": "an expert policy",
    "learner_policy": "the learner's policy",
    "abstraction": "an abstraction",
}


class Shaper:
    """A reward shaper, made once per trial.

    :param card: the task
    :param params: the shaper's parameters from the reward source (``{name: pbrs, gamma: 0.99}``)
    :param gamma: the learner's discount factor (a default for shapers whose guarantee depends on it)
    :cvar requires: capabilities the task must provide (see :data:`CAPABILITIES`)
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        self.card = card
        self.params = params
        self.gamma = gamma

    def fields_used(self) -> set[str]:
        """Card fields the shaper reads from the state (extracted alongside the reward's)."""
        return set()

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        """The training env with the shaping added to its reward (the unshaped reward kept in
        ``info["unshaped_reward"]``).

        :param extractor: the trial's extractor; it includes :meth:`fields_used`, and its simulator
            fields are what the sub-envs' ``StateCapture`` records
        """
        return venv

    def callbacks(self) -> list[Any]:
        """Training callbacks the shaper needs (learner snapshots, meta-gradient updates)."""
        return []


def get_shaper_class(name: str) -> type[Shaper]:
    """The shaper class registered as ``name`` (:data:`rewardlab.shaping.registry.SHAPERS`).

    :raises UserError: unknown name, or its package is not installed
    """
    cls = SHAPERS.get(name)
    assert isinstance(cls, type) and issubclass(cls, Shaper), f"shaper {name!r} is registered as {cls!r}"
    return cls


def make_shaper(name: str, params: dict[str, Any], card: EnvCard, gamma: float, provides: set[str]) -> Shaper:
    """The registered shaper ``name`` for a task.

    :param provides: the capabilities the task's simulator provides
    :raises UserError: unknown shaper, a capability the task lacks, or bad parameters
    """
    cls = get_shaper_class(name)
    missing = sorted(cls.requires - provides)
    if missing:
        needs = " and ".join(CAPABILITIES.get(m, m) for m in missing)
        has = ", ".join(CAPABILITIES.get(p, p) for p in sorted(provides)) or "none of these"
        raise UserError(f"shaper {name!r} needs {needs}; {card.id} provides {has}")
    try:
        return cls(card, params, gamma)
    except TypeError as e:
        raise UserError(f"shaper {name!r}: bad parameters ({e})") from None
