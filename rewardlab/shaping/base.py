"""The shaper interface: what a shaper needs from the task, the reward wrapper it adds, and the
training callbacks it needs.

Stateless shaping results (EXPRD's designed table) are emitted as reward programs; shapers that keep
state across steps (PBRS's previous potential, ExploRS's counts, ExpAdaRD's learner snapshots) live
in a ``VecEnv`` wrapper and callbacks, made here per trial. A shaper declares the *capabilities* it
needs (``tabular_model``, ``expert_policy``, ``learner_policy``, ``abstraction``); the simulator
adapter says which a task provides, and a mismatch is one clear line before anything trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.registry import SHAPERS
from rewardlab.state import StateExtractor

if TYPE_CHECKING:
    from rewardlab.sims.tabular import TabularMDP

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
    #: ``replace``: the shaped reward replaces the base reward (EXPRD, ExpAdaRD); ``additive``: it is
    #: added to it (PBRS, ExploRS)
    mode: ClassVar[Literal["replace", "additive"]] = "additive"

    @classmethod
    def for_params(cls, params: dict[str, Any]) -> type[Shaper]:
        """The class that implements the shaper with these parameters (PBRS: a potential program, or
        Φ = V* of a tabular task)."""
        return cls

    @classmethod
    def requirements(cls, params: dict[str, Any]) -> frozenset[str]:
        """The capabilities needed with these parameters (PBRS needs a model only for Φ = V*)."""
        return cls.requires

    @classmethod
    def learner_problem(cls, trainer: str, algo: str) -> str | None:
        """Why the shaper cannot run with this learner (one line), or None when it can: checked while
        validating, so a spec or command that pairs them is refused before anything trains.

        :param trainer: the registered trainer (``sb3``, ``tabular``, ...)
        :param algo: the trainer's algorithm (``ppo``, ``qlearning``, ...)
        """
        return None

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

    # -- tabular learners (rewardlab.training.tabular) ------------------------------------------------
    def tabular_reward(self, mdp: TabularMDP) -> np.ndarray | None:
        """The shaper's reward table ``(S, A)`` for a tabular task: the whole reward (``replace``) or
        the term added to the base reward (``additive``); None for shapers that change while the
        learner trains (those give :meth:`online`)."""
        return None

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> Any:
        """The per-step/per-episode hooks of a shaper that changes during training, vectorised over
        ``runs`` (:class:`rewardlab.training.tabular.OnlineShaping`); None for static shapers."""
        return None

    def write_artifacts(self, run_dir: Path) -> list[Path]:
        """Write what the shaper designed (a reward program, a table, a plot) into a trial's directory."""
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
    cls = get_shaper_class(name).for_params(params)
    missing = sorted(cls.requirements(params) - provides)
    if missing:
        needs = " and ".join(CAPABILITIES.get(m, m) for m in missing)
        offered = ", ".join(CAPABILITIES.get(p, p) for p in sorted(provides))
        if offered:
            has = f"provides {offered}"
        else:  # the wording follows how many things were named
            has = "does not provide it" if len(missing) == 1 else "provides neither" if len(missing) == 2 else \
                "provides none of them"
        hint = ""
        if "abstraction" in missing and "expert_policy" in provides:  # a continuous task with a scripted expert
            hint = " (declare one over its card fields: abstraction: {target: ..., source: ..., edges: [...]})"
        raise UserError(f"shaper {name!r} needs {needs}; {card.id} {has}{hint}")
    if "tabular_model" in cls.requirements(params) and card.action.type != "discrete":
        raise UserError(f"shaper {name!r} needs discrete actions; {card.id} has {card.action.type} actions")
    try:
        return cls(card, params, gamma)
    except TypeError as e:
        raise UserError(f"shaper {name!r}: bad parameters ({e})") from None


def tabular_model(card: EnvCard) -> TabularMDP:
    """The exact model of a task whose simulator provides ``tabular_model`` (the gridworlds).

    :raises UserError: the simulator has none
    """
    from rewardlab.sims.base import get_simulator

    adapter = get_simulator(card.simulator)
    get = getattr(adapter, "tabular_model", None)
    if get is None or "tabular_model" not in adapter.capabilities(card):
        raise UserError(f"{card.id} provides no tabular model")
    model: TabularMDP = get(card)
    return model


class TabularOnlyShaper(Shaper):
    """A shaper that exists for the tabular learners only so far (ExploRS, SORS, ExpAdaRD): with an SB3
    algorithm it refuses, rather than train on an unshaped reward."""

    @classmethod
    def learner_problem(cls, trainer: str, algo: str) -> str | None:
        if trainer == "tabular":
            return None
        return f"shaper {cls.name!r} runs with the tabular trainer only (trainer: tabular); its SB3 variant is not built yet"

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        raise UserError(type(self).learner_problem("sb3", "") or "")


class TableShaper(Shaper):
    """A shaper whose result is a fixed reward table on a tabular task (PBRS with Φ = V*, EXPRD).

    :meth:`design` computes the table once per trial; the SB3 path looks it up per step
    (:class:`TabularRewardVecEnv`), the tabular learners read it directly.
    """

    requires = frozenset({"tabular_model"})

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self._table: np.ndarray | None = None

    def design(self, mdp: TabularMDP) -> np.ndarray:
        """The reward table ``(S, A)`` (see :attr:`mode`)."""
        raise NotImplementedError

    def tabular_reward(self, mdp: TabularMDP) -> np.ndarray:
        if self._table is None:
            self._table = self.design(mdp)
        return self._table

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        table = self.tabular_reward(tabular_model(self.card))
        return TabularRewardVecEnv(venv, table, replace=self.mode == "replace")


class ActionMemoryVecEnv(VecEnvWrapper):
    """A shaping wrapper's base: remembers the actions of the step in flight, so that ``step_wait`` can reward
    (s, a) — SB3's ``VecEnv`` hands the actions to ``step_async`` only.

    :param venv: the env below
    :ivar actions: the last actions, ``(n_envs, *action_shape)`` as :attr:`action_dtype`
    """

    #: The dtype the actions are kept in (int64 for table lookups on ``Discrete`` actions).
    action_dtype: ClassVar[type] = np.float64

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.actions: np.ndarray = np.zeros((self.num_envs, *(self.action_space.shape or ())), dtype=self.action_dtype)

    def reset(self) -> Any:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions, dtype=self.action_dtype).reshape(self.actions.shape)
        self.venv.step_async(actions)


class TabularRewardVecEnv(ActionMemoryVecEnv):
    """Replaces (or adds to) a VecEnv's reward with a table ``R[s, a]`` of the state the action was
    taken in (``Discrete`` observations); ``info["unshaped_reward"]`` keeps the reward before.

    :param venv: training env with ``Discrete`` observations
    :param table: ``(S, A)``
    :param replace: the table is the reward (True) or a term added to it (False)
    """

    action_dtype = np.int64

    def __init__(self, venv: VecEnv, table: np.ndarray, replace: bool):
        super().__init__(venv)
        self.table = np.asarray(table, dtype=np.float64)
        self.replace = replace
        self._obs = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._obs = np.asarray(obs, dtype=np.int64).reshape(self.num_envs)
        return obs

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        shaped = self.table[self._obs, self.actions]
        for i, info in enumerate(infos):
            info["unshaped_reward"] = float(reward[i])
        total = shaped if self.replace else np.asarray(reward, dtype=np.float64) + shaped
        self._obs = np.asarray(obs, dtype=np.int64).reshape(self.num_envs)  # after an auto-reset: the reset state
        return obs, total.astype(np.float32), dones, infos


def check_shaper_for(card: EnvCard, name: str, params: dict[str, Any], trainer: str | None = None,
                     algo: str | None = None) -> None:
    """Refuse, with one line, a shaper the task cannot provide for, whose parameters are wrong, or that
    cannot run with the learner — before anything trains (the CLI and the runner call it while validating).

    :param trainer: the trial's trainer and ``algo`` its algorithm (None: the learner is not checked)
    :raises UserError: see :func:`make_shaper` and :meth:`Shaper.learner_problem`
    """
    from rewardlab.sims.base import get_simulator

    shaper = make_shaper(name, params, card, 0.99, get_simulator(card.simulator).capabilities(card))
    problem = type(shaper).learner_problem(trainer, algo or "") if trainer is not None else None
    if problem:
        raise UserError(problem)
