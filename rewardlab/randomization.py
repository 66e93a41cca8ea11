"""Domain randomisation over MuJoCo physics: the ranges (pydantic, YAML) and the wrapper that draws them.

Anchor: DrEureka (Ma et al., RSS 2024, eureka-research/DrEureka), which trains its policies on physics
randomised within LLM-written ranges. :mod:`rewardlab.robustness` measures an exported policy against
these perturbations and asks a provider for ranges.

- :class:`RandomizationRanges` (pydantic, YAML): per parameter a ``[low, high]`` range. ``friction``,
  ``mass``, ``damping`` and ``actuator_gain`` are *scales* of the model's nominal values (1 = as
  built); ``obs_noise`` is the standard deviation of Gaussian noise added to every observation
  column (observation units); ``action_latency`` is a delay in control steps (integers).
- :class:`DomainRandomization` (a gymnasium ``Wrapper``, so it composes under SB3's ``DummyVecEnv``
  like any other): at every reset it samples each parameter uniformly in its range and applies it to
  the MuJoCo model; a range with ``low == high`` fixes the value (what the robustness grid uses).
  :func:`randomized_vec_env` is a ``DummyVecEnv`` of them; the ``sb3`` trainer wraps its training envs
  when a preset or ``--randomize`` gives ``randomization`` ranges.

It sits just above the simulators (below the state view and the trainers), so that training can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rewardlab.cards import describe_validation_error
from rewardlab.errors import UserError, one_line
from rewardlab.paths import shown_path

#: Every randomisable parameter, with its nominal value and what it means (the prompt shows these).
PARAMETERS: dict[str, dict[str, Any]] = {
    "friction": {"nominal": 1.0, "unit": "x nominal", "doc": "scale of every geom's friction coefficients"},
    "mass": {"nominal": 1.0, "unit": "x nominal", "doc": "scale of every body's mass and inertia"},
    "damping": {"nominal": 1.0, "unit": "x nominal", "doc": "scale of every joint's damping"},
    "actuator_gain": {"nominal": 1.0, "unit": "x nominal",
                      "doc": "scale of every actuator's gain (force per unit of action; position servos' kp too)"},
    "obs_noise": {"nominal": 0.0, "unit": "observation units (std)",
                  "doc": "standard deviation of Gaussian noise added to every observation column"},
    "action_latency": {"nominal": 0, "unit": "control steps",
                       "doc": "delay between the policy's action and its application (an integer)"},
}
SCALES = ("friction", "mass", "damping", "actuator_gain")


class Range(BaseModel):
    """A closed interval ``[low, high]`` (written as a two-element list in YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"a range is [low, high], got {len(value)} values")
            return {"low": value[0], "high": value[1]}
        if isinstance(value, (int, float)):  # a single number fixes the value
            return {"low": value, "high": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        return self

    def as_list(self) -> list[float]:
        return [self.low, self.high]


class RandomizationRanges(BaseModel):
    """Domain-randomisation ranges per parameter (an absent parameter stays nominal); see the module
    docstring for units. Loaded from YAML such as ``{friction: [0.7, 1.3], action_latency: [0, 1]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    friction: Range | None = Field(default=None, description="scale of geom friction (1 = nominal)")
    mass: Range | None = Field(default=None, description="scale of body masses and inertias (1 = nominal)")
    damping: Range | None = Field(default=None, description="scale of joint damping (1 = nominal)")
    actuator_gain: Range | None = Field(default=None, description="scale of actuator gains (1 = nominal)")
    obs_noise: Range | None = Field(default=None, description="std of Gaussian observation noise (obs units)")
    action_latency: Range | None = Field(default=None, description="action delay in control steps (integers)")

    @field_validator("friction", "mass", "damping", "actuator_gain")
    @classmethod
    def _positive_scale(cls, v: Range | None) -> Range | None:
        if v is not None and v.low <= 0:
            raise ValueError(f"a scale must be positive, got low {v.low:g}")
        return v

    @field_validator("obs_noise")
    @classmethod
    def _non_negative(cls, v: Range | None) -> Range | None:
        if v is not None and v.low < 0:
            raise ValueError(f"a noise std cannot be negative, got low {v.low:g}")
        return v

    @field_validator("action_latency")
    @classmethod
    def _steps(cls, v: Range | None) -> Range | None:
        if v is not None and (v.low < 0 or v.low != int(v.low) or v.high != int(v.high)):
            raise ValueError(f"latency is a whole number of steps >= 0, got [{v.low:g}, {v.high:g}]")
        return v

    def items(self) -> list[tuple[str, Range]]:
        """The set ranges, in :data:`PARAMETERS` order."""
        return [(name, r) for name in PARAMETERS if (r := getattr(self, name)) is not None]

    def to_yaml(self) -> str:
        return yaml.safe_dump({name: r.as_list() for name, r in self.items()}, sort_keys=False)


def parse_ranges(text: str, what: str = "ranges") -> RandomizationRanges:
    """Ranges from YAML text.

    :raises UserError: not YAML, not a mapping, an unknown parameter or a bad range (one line naming the field)
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{what}: not valid YAML ({one_line(str(e), 160)})") from None
    if data is None:  # only comments: nothing to randomise is a meaningless setting, not "no randomisation"
        raise UserError(f"{what}: empty; expected parameter: [low, high] (parameters: {', '.join(PARAMETERS)})")
    if not isinstance(data, dict):
        raise UserError(f"{what}: expected a mapping of parameter: [low, high], got {type(data).__name__}")
    try:
        return RandomizationRanges.model_validate(data)
    except ValidationError as e:
        text = describe_validation_error(e)
        if any(err["type"] == "extra_forbidden" for err in e.errors()):
            text += f" (parameters: {', '.join(PARAMETERS)})"
        raise UserError(f"{what}: {text}") from None


def load_ranges(path: str | Path) -> RandomizationRanges:
    """Ranges from a YAML file (:func:`parse_ranges`)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no ranges file {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a ranges file (YAML of parameter: [low, high])")
    try:  # not only regular files: a pipe or /dev/stdin is read as the user asked
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read ranges file {path}: {one_line(str(e), 160)}") from None
    if not text.strip():
        raise UserError(f"empty ranges file {path}: expected YAML of parameter: [low, high] "
                        f"(parameters: {', '.join(PARAMETERS)})")
    return parse_ranges(text, shown_path(path))


class DomainRandomization(gym.Wrapper):
    """Randomise a MuJoCo env's physics, observations and action timing at every reset.

    :param env: a gymnasium env whose ``unwrapped`` has a MuJoCo ``model`` (gymnasium MuJoCo, MetaWorld)
    :param ranges: what to randomise and how far
    :param seed: seeds the sampling of parameters and observation noise
    :raises UserError: the env is not a MuJoCo env
    """

    def __init__(self, env: gym.Env, ranges: RandomizationRanges, seed: int | None = None):
        super().__init__(env)
        model = getattr(env.unwrapped, "model", None)
        if model is None or not hasattr(model, "geom_friction"):
            raise UserError(f"domain randomisation needs a MuJoCo env; {env.unwrapped} has no MuJoCo model")
        self.ranges = ranges
        self.rng = np.random.default_rng(seed)
        self._model = model
        self._nominal = {name: np.array(getattr(model, name), copy=True) for name in (
            "geom_friction", "body_mass", "body_inertia", "dof_damping", "actuator_gainprm", "actuator_biasprm")}
        self.current: dict[str, float] = {}
        self._queue: list[np.ndarray] = []

    def sample(self) -> dict[str, float]:
        """One draw of every set parameter (uniform; latency a uniform integer)."""
        drawn: dict[str, float] = {}
        for name, r in self.ranges.items():
            if name == "action_latency":
                drawn[name] = float(self.rng.integers(int(r.low), int(r.high) + 1))
            else:
                drawn[name] = float(self.rng.uniform(r.low, r.high)) if r.high > r.low else r.low
        return drawn

    def _apply(self, values: dict[str, float]) -> None:
        m, nom = self._model, self._nominal
        m.geom_friction[:] = nom["geom_friction"] * values.get("friction", 1.0)
        m.body_mass[:] = nom["body_mass"] * values.get("mass", 1.0)
        m.body_inertia[:] = nom["body_inertia"] * values.get("mass", 1.0)
        m.dof_damping[:] = nom["dof_damping"] * values.get("damping", 1.0)
        gain = values.get("actuator_gain", 1.0)
        m.actuator_gainprm[:, 0] = nom["actuator_gainprm"][:, 0] * gain
        # a position servo's bias is -kp * q (- kv * qdot): its gain scales with kp
        m.actuator_biasprm[:, 1:3] = nom["actuator_biasprm"][:, 1:3] * gain

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.current = self.sample()
        self._apply(self.current)
        self._queue = []
        obs, info = self.env.reset(**kwargs)
        info["randomization"] = dict(self.current)
        return self._noisy(obs), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        latency = int(self.current.get("action_latency", 0))
        if latency:
            # the first `latency` steps apply the "do nothing" action: nothing has arrived yet
            if not self._queue:
                idle = np.zeros_like(np.asarray(action, dtype=float))
                space = self.env.action_space
                if isinstance(space, gym.spaces.Box):  # "nothing" inside the bounds
                    idle = np.clip(idle, space.low, space.high)
                self._queue = [idle] * latency
            self._queue.append(np.asarray(action))
            action = self._queue.pop(0)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info

    def _noisy(self, obs: Any) -> Any:
        std = self.current.get("obs_noise", 0.0)
        if not std:
            return obs
        obs = np.asarray(obs)
        return obs + self.rng.normal(0.0, std, size=obs.shape).astype(obs.dtype)


def randomized_vec_env(card: Any, ranges: RandomizationRanges, n_envs: int, seed: int) -> Any:
    """An SB3 ``DummyVecEnv`` of ``n_envs`` card envs, each randomised at every reset (sub-env ``i``
    made, and its draws seeded, with ``seed + i``), for training on randomised physics.

    :param card: an :class:`~rewardlab.cards.EnvCard`
    :raises UserError: ``n_envs`` below 1
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rewardlab.sims.base import make_env

    if n_envs < 1:
        raise UserError(f"n_envs must be at least 1, got {n_envs}")

    def factory(i: int) -> Any:
        return lambda: DomainRandomization(make_env(card, seed=seed + i), ranges, seed=seed + i)

    venv = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    return venv


def randomized(ranges: RandomizationRanges) -> Any:
    """A ``wrap(env, seed)`` for :func:`rewardlab.export.play`: each episode's env randomised, seeded by it."""
    return lambda env, seed: DomainRandomization(env, ranges, seed=seed)


def fixed_ranges(values: dict[str, float]) -> RandomizationRanges:
    """Ranges that fix each named parameter at its value (``low == high``)."""
    return RandomizationRanges.model_validate({k: [v, v] for k, v in values.items()})
