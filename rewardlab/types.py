"""Shared types: array aliases, seeds, and the typed result of a training trial.

Like stable-baselines3's ``common/type_aliases.py``, this is the lowest module of the package, so that
every layer (trainers that write a :class:`TrialResult`, the store that keeps it, the report that reads
it) can name these types without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: An array of the state view's backend: a numpy array (CPU vector envs) or a torch tensor (GPU envs).
#: torch is not imported here; a tensor is typed ``Any``.
Array: TypeAlias = np.ndarray | Any
#: Named reward terms, each ``(B,)``.
Components: TypeAlias = dict[str, Array]
#: What a compiled reward returns: the total ``(B,)`` and its components ``{name: (B,)}``.
RewardOutput: TypeAlias = tuple[Array, Components]

#: numpy's seeds are 32-bit: a larger one fails deep inside the first env reset, so it is refused here.
MAX_SEED = 2**32 - 1
#: A seed for envs, agents and evaluation: an integer in ``[0, 2**32 - 1]``.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="an integer in [0, 2**32 - 1]")]


class CurvePoint(BaseModel):
    """One deterministic evaluation during training: means over its episodes.

    :param step: environment steps trained when it was taken (0: the untrained policy)
    :param return_env: mean return under the env's own reward
    :param return_program: mean return under the reward trained on (None when that is the env's own)
    :param success: fraction of episodes that met the card's success rule (None: the card has none)
    :param length: mean episode length in steps
    :param components: mean per-episode sum of each named reward component
    """

    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")
    step: int
    return_env: float | None = None
    return_program: float | None = None
    success: float | None = None
    length: float | None = None
    components: dict[str, float] = Field(default_factory=dict)


class EvalResult(BaseModel):
    """A deterministic evaluation, episode by episode (each list has one entry per episode).

    :param env_return: return under the env's own reward
    :param program_return: return under the reward trained on (``None`` entries: the env's own reward)
    :param success: whether the card's success rule held (``None`` entries: the card has no rule)
    :param length: episode length in steps
    :param components: per episode, the sum of each named reward component
    """

    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")
    env_return: list[float] = Field(default_factory=list)
    program_return: list[float | None] = Field(default_factory=list)
    success: list[bool | None] = Field(default_factory=list)
    length: list[int] = Field(default_factory=list)
    components: list[dict[str, float]] = Field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.env_return)

    def mean(self, name: str) -> float | None:
        """Mean over episodes of ``env_return``, ``program_return``, ``success`` or ``length``;
        ``None`` when the value does not apply (no program, no success rule) or there are no episodes."""
        values = [float(v) for v in getattr(self, name) if v is not None]
        return float(np.mean(values)) if values else None

    def point(self, step: int) -> CurvePoint:
        """This evaluation as a learning-curve point at ``step``."""
        names = self.components[0].keys() if self.components else ()
        return CurvePoint(
            step=step, return_env=self.mean("env_return"), return_program=self.mean("program_return"),
            success=self.mean("success"), length=self.mean("length"),
            components={k: float(np.mean([c[k] for c in self.components])) for k in names},
        )


class TrialResult(BaseModel):
    """What one training trial produced; stored as JSON in the run store and in ``result.json``.

    :param curve: the learning curve, from step 0 (untrained) to the end
    :param eval: the final deterministic evaluation (the curve's last point summarises it)
    :param wall_s: wall-clock seconds of the whole trial (checks, training, evaluations)
    :param steps: environment steps actually trained (at least the budget: algorithms train in whole
        rollouts)
    :param model_path: the saved model
    :param reward_sha256: the sha256 of the reward program trained on (None: the env's own reward)
    :param trainer: the trainer's registered name (``sb3``, ...)
    :param algo: the algorithm it ran (``ppo``, ...)
    :param reward_cost: measured cost of the reward path: ``us_per_step`` (microseconds per vector step)
        and ``fraction`` (its share of the time of an env step); empty when not measured
    """

    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="constants")
    curve: list[CurvePoint] = Field(default_factory=list)
    eval: EvalResult = Field(default_factory=EvalResult)
    wall_s: float = 0.0
    steps: int = 0
    model_path: str = ""
    reward_sha256: str | None = None
    trainer: str = "sb3"
    algo: str = ""
    reward_cost: dict[str, float] = Field(default_factory=dict)

    def final(self, name: str) -> float | None:
        """The final evaluation's mean of ``env_return``, ``program_return``, ``success`` or ``length``."""
        return self.eval.mean(name)

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(indent=indent)
