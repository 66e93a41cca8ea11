"""Trainers behind one registry: a trainer takes a card, a resolved reward and a
:class:`~rewardlab.config.TrainConfig` and returns a typed :class:`~rewardlab.types.TrialResult`.

The runner dispatches on a spec's ``trainer:`` name, so new trainers (tabular learners, E2CL agents,
GPU rollouts) register here without touching the runner: built-ins by ``module:Class`` path, others
with :func:`register_trainer` or the ``rewardlab.trainers`` entry-point group.

:func:`train` is the one-call form the CLI and tests use: card id and reward source in, result out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rewardlab.cards import EnvCard, load_card
from rewardlab.config import Budget, Evaluation, TrainConfig
from rewardlab.errors import UserError
from rewardlab.program import RewardProgram
from rewardlab.registry import Registry
from rewardlab.runtime import limit_threads
from rewardlab.sources import Generate, ResolvedReward, RewardSource, parse_source, resolve_source
from rewardlab.training.presets import ALGORITHMS, load_preset
from rewardlab.types import CurvePoint, EvalResult, TrialResult

__all__ = ["ALGORITHMS", "TRAINERS", "CurvePoint", "EvalResult", "Trainer", "TrialResult", "get_trainer",
           "limit_threads", "load_preset", "register_trainer", "train", "trainer_names"]


@runtime_checkable
class Trainer(Protocol):
    """What the runner needs from a trainer.

    :cvar name: the registered name (``sb3``)
    :cvar algorithms: the algorithms it runs (a spec's ``algorithms`` are checked against them)
    """

    name: str
    algorithms: tuple[str, ...]

    def validate(self, card: EnvCard, config: TrainConfig) -> None:
        """Raise :class:`UserError` for settings that would not train (before anything is written)."""

    def train(self, card: EnvCard, reward: ResolvedReward, config: TrainConfig, run_dir: Path,
              callbacks: Sequence[Any] = (), progress: Callable[[int, int], None] | None = None,
              check: bool = True) -> TrialResult:
        """Train and evaluate into the existing, empty ``run_dir``."""


#: Registered trainers; entries are trainer classes, instantiated once on first use.
TRAINERS: Registry[Trainer] = Registry("trainer", {"sb3": "rewardlab.training.sb3:SB3Trainer",
                                                  "tabular": "rewardlab.training.tabular:TabularTrainer",
                                                  "e2cl": "rewardlab.e2cl.trainer:E2CLTrainer",
                                                  "gpu": "rewardlab.training.gpu:GPUTrainer"},
                                       group="rewardlab.trainers", instantiate=True)


def register_trainer(name: str, trainer: Trainer | str) -> None:
    """Register a trainer instance (or ``module:Class``) under ``name``."""
    TRAINERS.register(name, trainer)


def trainer_names() -> list[str]:
    return TRAINERS.names()


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name``.

    :raises UserError: unknown name (with a "did you mean"), or its package is not installed
    """
    return TRAINERS.get(name)


def validate(card: EnvCard, config: TrainConfig) -> Trainer:
    """The config's trainer, after checking its algorithm and its own rules for ``card``."""
    trainer = get_trainer(config.trainer)
    if config.algo not in trainer.algorithms:
        raise UserError(f"unknown algorithm {config.algo!r} for trainer {trainer.name!r}; "
                        f"expected one of {', '.join(trainer.algorithms)}")
    trainer.validate(card, config)
    return trainer


def train(
    card_id: str | Path | EnvCard,
    reward: str | RewardSource | RewardProgram | ResolvedReward,
    algo: str,
    steps: int,
    seed: int,
    run_dir: Path,
    eval_episodes: int = 5,
    eval_every: int | None = None,
    preset_overrides: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check: bool = True,
    trainer: str = "sb3",
    callbacks: Sequence[Any] = (),
    generate: Generate | None = None,
) -> TrialResult:
    """Train one agent and evaluate it (the registered trainer does the work).

    :param card_id: env card id, YAML path or card
    :param reward: a source in its command-line form (``env``, ``reference``, a program path), a
        :data:`~rewardlab.sources.RewardSource`, or an already resolved reward or program
    :param algo: the trainer's algorithm (``ppo``, ``sac``, ``td3`` for ``sb3``)
    :param steps: environment steps to train for
    :param seed: seed of the agent, the training envs and (offset) the evaluation envs
    :param run_dir: where the model, checkpoints, logs and ``result.json`` go (created when missing)
    :param eval_episodes: deterministic evaluation episodes at each curve point and at the end
    :param eval_every: steps between learning-curve evaluations (default: a tenth of ``steps``)
    :param preset_overrides: hyperparameters replacing the preset's
    :param progress: called with ``(steps_done, steps)`` as training goes
    :param check: run the sandbox trial on the program before training (leave on for untrusted code)
    :param trainer: a registered trainer name
    :param callbacks: trainer callbacks to add (SB3 callbacks for ``sb3``)
    :param generate: the generation loop, for ``generated`` sources
    :raises UserError: bad settings (one line), a rejected program, a failed resolution
    """
    card = card_id if isinstance(card_id, EnvCard) else load_card(card_id)
    config = TrainConfig(trainer=trainer, algo=algo, seed=seed, budget=Budget(steps=steps),
                         evaluation=Evaluation(episodes=eval_episodes, every=eval_every),
                         overrides=dict(preset_overrides or {}))
    chosen = validate(card, config)
    if isinstance(reward, str):
        reward = parse_source(reward)
    resolved: ResolvedReward = reward if isinstance(reward, ResolvedReward) else resolve_source(reward, card, generate)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return chosen.train(card, resolved, config, Path(run_dir), callbacks=callbacks, progress=progress, check=check)
