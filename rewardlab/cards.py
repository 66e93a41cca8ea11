"""Env cards: a compact, checked description of a task for reward design.

A card names the task, gives the instruction in plain words, lists the *entities* and their fields
(shape, unit, meaning and where each value comes from), the action and observation spaces, the
success criterion and the episode length. Cards are YAML files under ``envs/``; :func:`load_card`
finds them by id or path, :meth:`EnvCard.check_live` checks them against the real environment
(:func:`rewardlab.sims.verify_card` does so when a card is used), and :func:`render_stubs` renders
them as the Pythonic class stubs that Text2Reward showed LLMs read best.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from rewardlab.errors import UserError
from rewardlab.resources import resource_dir
from rewardlab.sims.registry import check_simulator_name

# Names a simulator source may start from: the raw MjData/MjModel, the unwrapped env.
_SIM_ROOTS = {"data", "model", "env", "np"}


# -- observation sources ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ObsIndex:
    """An ``obs`` source parsed: the whole observation, ``obs[i]`` or ``obs[a:b:c]``, with Python's
    meaning (negative indices count from the end)."""

    index: int | slice | None  # None: the whole observation

    def columns(self, obs_dim: int) -> list[int]:
        """The observation columns it selects in an ``obs_dim``-wide observation.

        :raises IndexError: an index outside the observation
        """
        if self.index is None:
            return list(range(obs_dim))
        if isinstance(self.index, slice):
            return list(range(obs_dim)[self.index])
        return [range(obs_dim)[self.index]]


def _int_constant(node: ast.AST | None) -> int | None:
    if node is None:
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_constant(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    raise ValueError("not an integer")


def parse_obs_source(text: str) -> ObsIndex | None:
    """``obs``, ``obs[3]``, ``obs[-3:]``, ``obs[36:]``, ``obs[0:6:2]`` -> :class:`ObsIndex`; anything
    else (a simulator accessor) -> None."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Name) and node.id == "obs":
        return ObsIndex(None)
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "obs"):
        return None
    try:
        if isinstance(node.slice, ast.Slice):
            step = _int_constant(node.slice.step)
            if step == 0:
                return None
            return ObsIndex(slice(_int_constant(node.slice.lower), _int_constant(node.slice.upper), step))
        index = _int_constant(node.slice)
    except ValueError:
        return None
    return None if index is None else ObsIndex(index)


class FieldSpec(BaseModel):
    """One named value of the state view.

    :param source: ``obs`` / ``obs[i]`` / ``obs[a:b]`` / ``obs[-3:]`` (observation columns, with Python's
        indexing) or a simulator accessor such as ``data.qvel[0]`` or ``data.body('torso').xpos``
        evaluated on the unwrapped env
    :param shape: shape per environment (``[]`` for a scalar)
    :param unit: physical unit, if any
    :param doc: what the value means, in words (shown to LLMs)
    """

    model_config = ConfigDict(extra="forbid")
    source: str
    shape: list[int] = Field(default_factory=list)
    unit: str | None = None
    doc: str = ""

    @field_validator("shape")
    @classmethod
    def _shape_is_positive(cls, v: list[int]) -> list[int]:
        if any(d <= 0 for d in v):
            raise ValueError(f"shape {v} must have positive sizes")
        return v

    @field_validator("source")
    @classmethod
    def _source_is_safe(cls, v: str) -> str:
        v = v.strip()
        if parse_obs_source(v) is not None:
            return v
        try:
            tree = ast.parse(v, mode="eval")
        except SyntaxError as e:
            raise ValueError(f"source {v!r} is not a valid expression ({e.msg})") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in _SIM_ROOTS:
                raise ValueError(f"source {v!r} may only start from {sorted(_SIM_ROOTS)} or be obs[..]")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise ValueError(f"source {v!r} uses a private attribute {node.attr!r}")
            if not isinstance(
                node,
                (ast.Expression, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.Constant, ast.Call,
                 ast.BinOp, ast.UnaryOp, ast.Tuple, ast.Load, ast.operator, ast.unaryop),
            ):
                raise ValueError(f"source {v!r} uses {type(node).__name__}, which sources may not")
        return v

    @cached_property
    def obs_index(self) -> ObsIndex | None:
        """The parsed observation source, or None for a simulator source."""
        return parse_obs_source(self.source)

    @property
    def kind(self) -> Literal["obs", "sim"]:
        return "obs" if self.obs_index is not None else "sim"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def obs_columns(self, obs_dim: int) -> list[int]:
        """Observation columns of an ``obs`` source in an ``obs_dim``-wide observation."""
        assert self.obs_index is not None, f"{self.source} is not an observation source"
        return self.obs_index.columns(obs_dim)


def split_card_id(card_id: str) -> tuple[str, str]:
    """``metaworld/drawer-open-v3`` -> ``("metaworld", "drawer-open-v3")``: the family, then the task."""
    family, _, task = card_id.partition("/")
    return family, task or family


def _entity_kind(value: Any) -> str:
    """A mapping with a ``source`` is a top-level field; any other mapping is an entity of fields."""
    if isinstance(value, FieldSpec) or (isinstance(value, dict) and "source" in value):
        return "field"
    return "entity"


Entity = Annotated[
    Annotated[FieldSpec, Tag("field")] | Annotated[dict[str, FieldSpec], Tag("entity")],
    Discriminator(_entity_kind),
]


# -- spaces ------------------------------------------------------------------------------------------
def _bounds_text(bound: float | list[float]) -> str:
    return f"{bound:g}" if isinstance(bound, int | float) else "per-dim"


class BoxSpace(BaseModel):
    """A continuous space (gymnasium ``Box``): shape, bounds and meaning. ``type: box`` may be omitted.

    :param low: one bound for every dimension, or one per dimension
    """

    model_config = ConfigDict(extra="forbid")
    type: Literal["box"] = "box"
    shape: list[int]
    low: float | list[float]
    high: float | list[float]
    doc: str = ""

    def low_high(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounds broadcast to the shape (float64)."""
        shape = tuple(self.shape)
        return (np.broadcast_to(np.asarray(self.low, float), shape).copy(),
                np.broadcast_to(np.asarray(self.high, float), shape).copy())

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random element (infinite bounds are clipped to +-1)."""
        low, high = self.low_high()
        return rng.uniform(np.maximum(low, -1.0) if np.isinf(low).any() else low,
                           np.minimum(high, 1.0) if np.isinf(high).any() else high)

    def idle(self) -> np.ndarray:
        """The "do nothing" element: zeros, clipped into the bounds."""
        low, high = self.low_high()
        return np.clip(np.zeros(self.shape), low, high)

    def describe(self) -> str:
        dims = ", ".join(map(str, self.shape))
        return f"np.ndarray (B, {dims}) in [{_bounds_text(self.low)}, {_bounds_text(self.high)}]: {self.doc}"

    def mismatch(self, space: Any, what: str) -> list[str]:
        """What differs from a live gymnasium space (empty: it matches)."""
        from gymnasium import spaces

        if not isinstance(space, spaces.Box):
            return [f"{what} is a {type(space).__name__} in the env, a Box in the card"]
        if tuple(space.shape) != tuple(self.shape):
            return [f"{what} shape {list(space.shape)} in the env, {self.shape} in the card"]
        problems = []
        for name, env_bound, card_bound in zip(("low", "high"), (space.low, space.high), self.low_high()):
            if not np.allclose(card_bound, env_bound, atol=1e-6):
                problems.append(f"{what} {name} {np.asarray(env_bound).tolist()} in the env, "
                                f"{card_bound.tolist()} in the card")
        return problems


class DiscreteSpace(BaseModel):
    """A finite set of choices ``start .. start + n - 1`` (gymnasium ``Discrete``); as an action, the
    reward program sees it as a ``(B,)`` integer array."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["discrete"]
    n: int = Field(gt=0)
    start: int = 0
    doc: str = ""

    @property
    def shape(self) -> list[int]:
        return []

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.start + rng.integers(self.n))

    def idle(self) -> np.ndarray:
        return np.asarray(self.start)

    def describe(self) -> str:
        return f"np.ndarray (B,) of integers in [{self.start}, {self.start + self.n - 1}]: {self.doc}"

    def mismatch(self, space: Any, what: str) -> list[str]:
        from gymnasium import spaces

        if not isinstance(space, spaces.Discrete):
            return [f"{what} is a {type(space).__name__} in the env, Discrete in the card"]
        if (int(space.n), int(space.start)) != (self.n, self.start):
            return [f"{what} is Discrete({int(space.n)}, start={int(space.start)}) in the env, "
                    f"Discrete({self.n}, start={self.start}) in the card"]
        return []


class MultiDiscreteSpace(BaseModel):
    """Several finite choices, ``nvec[i]`` values each (gymnasium ``MultiDiscrete``)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["multidiscrete"]
    nvec: list[int] = Field(min_length=1)
    doc: str = ""

    @field_validator("nvec")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n <= 0 for n in v):
            raise ValueError(f"nvec {v} must be positive")
        return v

    @property
    def shape(self) -> list[int]:
        return [len(self.nvec)]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(np.asarray(self.nvec))

    def idle(self) -> np.ndarray:
        return np.zeros(len(self.nvec), dtype=np.int64)

    def describe(self) -> str:
        return f"np.ndarray (B, {len(self.nvec)}) of integers, entry i in [0, nvec[i] - 1], nvec = {self.nvec}: {self.doc}"

    def mismatch(self, space: Any, what: str) -> list[str]:
        from gymnasium import spaces

        if not isinstance(space, spaces.MultiDiscrete):
            return [f"{what} is a {type(space).__name__} in the env, MultiDiscrete in the card"]
        if np.asarray(space.nvec).tolist() != self.nvec:
            return [f"{what} nvec {np.asarray(space.nvec).tolist()} in the env, {self.nvec} in the card"]
        return []


def _space_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "box"))
    return str(getattr(value, "type", "box"))


#: An action or observation space: Box (``type`` omitted or ``box``), ``discrete`` or ``multidiscrete``.
SpaceSpec = Annotated[
    Annotated[BoxSpace, Tag("box")]
    | Annotated[DiscreteSpace, Tag("discrete")]
    | Annotated[MultiDiscreteSpace, Tag("multidiscrete")],
    Discriminator(_space_kind),
]
#: The action space of a card (see :data:`SpaceSpec`).
ActionSpec = SpaceSpec


# -- success criterion -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SuccessRule:
    """A card's success criterion, parsed once and used by everything that judges or describes success
    (the reward wrapper, the pre-training checks, the prompts, the offline provider).

    :param kind: ``info`` (``info[key]`` true at some step), ``survived`` (the episode was not ended
        early by the env) or ``threshold`` (``key op value`` on the final state)
    """

    kind: Literal["info", "survived", "threshold"]
    key: str = ""
    op: str = ""
    value: float = 0.0

    @classmethod
    def parse(cls, text: str, field_names: set[str] | None = None) -> SuccessRule:
        """Parse ``info.KEY``, ``survived``, ``FIELD < N`` or ``FIELD > N``.

        :param field_names: the card's fields; a threshold must name one of them
        :raises ValueError: anything else
        """
        text = text.strip()
        if text == "survived":
            return cls("survived")
        if m := re.fullmatch(r"info\.(\w+)", text):
            return cls("info", key=m.group(1))
        if m := re.fullmatch(r"([\w.]+)\s*([<>])\s*(-?[\d.eE+-]+)", text):
            if field_names is not None and m.group(1) not in field_names:
                raise ValueError(f"success {text!r} names {m.group(1)!r}, which is not a field of the card")
            try:
                value = float(m.group(3))
            except ValueError:
                raise ValueError(f"success {text!r}: {m.group(3)!r} is not a number") from None
            return cls("threshold", key=m.group(1), op=m.group(2), value=value)
        raise ValueError(f"success {text!r} is not 'info.KEY', 'survived' or 'FIELD < NUMBER'")

    @property
    def fields(self) -> frozenset[str]:
        """The card fields the rule reads (a threshold's field)."""
        return frozenset({self.key}) if self.kind == "threshold" else frozenset()

    def holds(self, *, info_hit: bool = False, terminated: bool = False, final: Any = None) -> bool:
        """Whether an episode succeeded.

        :param info_hit: ``info[key]`` was true at some step (``info`` rules)
        :param terminated: the env ended the episode itself (not a time limit) (``survived`` rules)
        :param final: the threshold field's value in the final state (a number) (``threshold`` rules)
        """
        if self.kind == "info":
            return bool(info_hit)
        if self.kind == "survived":
            return not terminated
        value = float(np.asarray(final, dtype=float).reshape(-1)[0])
        return value < self.value if self.op == "<" else value > self.value

    def describe(self) -> str:
        """The criterion in words (for prompts and reports)."""
        if self.kind == "survived":
            return "the episode is not ended early (the agent stays healthy until the time limit)."
        if self.kind == "info":
            return (f"the environment reports success (info['{self.key}']) at some step of the episode; "
                    "the tips below say what it tests.")
        return f"at the end of the episode, self.{self.key} {self.op} {self.value:g}."

    def __str__(self) -> str:
        if self.kind == "survived":
            return "survived"
        if self.kind == "info":
            return f"info.{self.key}"
        return f"{self.key} {self.op} {self.value:g}"


def parse_success(text: str, field_names: set[str] | None = None) -> SuccessRule:
    """:meth:`SuccessRule.parse` (kept for callers of rewardlab 0.1)."""
    return SuccessRule.parse(text, field_names)


# -- the card ------------------------------------------------------------------------------------------
class EnvCard(BaseModel):
    """A task described for reward design (see module docstring).

    :param simulator: a registered simulator name (:func:`rewardlab.sims.registry.simulator_names`)
    :param episode_steps: the episode length; honoured by the env or the mismatch rejected when the
        card is checked
    :param observation: the observation space, checked against the env when given
    """

    model_config = ConfigDict(extra="forbid")
    id: str
    simulator: str
    env_id: str = Field(description="the simulator's own id, e.g. HalfCheetah-v5 or drawer-open-v3")
    make_kwargs: dict[str, Any] = Field(default_factory=dict)
    instruction: str
    episode_steps: int = Field(gt=0)
    success: str | None = Field(
        default=None,
        description="'info.KEY' (true at any step), 'survived' (not terminated early) or "
        "'FIELD < NUMBER' / 'FIELD > NUMBER' on the final state; null when the task has none",
    )
    entities: dict[str, Entity]
    action: SpaceSpec
    observation: SpaceSpec | None = None
    tips: list[str] = Field(default_factory=list, description="background knowledge for prompts")
    path: Path | None = Field(default=None, exclude=True)
    _given: str | None = PrivateAttr(default=None)  # the path the user named it by, for messages

    @model_validator(mode="after")
    def _check_success(self) -> EnvCard:
        if self.success is not None:
            rule = SuccessRule.parse(self.success, set(self.fields()))
            if rule.kind == "threshold" and self.fields()[rule.key].size != 1:
                raise ValueError(f"success {self.success!r} needs a scalar field; {rule.key} has shape "
                                 f"{self.fields()[rule.key].shape}")
        return self

    @property
    def success_rule(self) -> SuccessRule | None:
        """The parsed success criterion (None when the task has none)."""
        return None if self.success is None else SuccessRule.parse(self.success)

    @property
    def label(self) -> str:
        """How messages name the card: the file the user gave (``my-card.yaml``), else its id."""
        return self._given or self.id

    # -- the fields, flattened -------------------------------------------------------------
    def fields(self) -> dict[str, FieldSpec]:
        """All fields by dotted name (``robot.ee_position``, ``goal_position``), in card order."""
        out: dict[str, FieldSpec] = {}
        for name, value in self.entities.items():
            if isinstance(value, FieldSpec):
                out[name] = value
            else:
                for fname, spec in value.items():
                    out[f"{name}.{fname}"] = spec
        return out

    @property
    def family(self) -> str:
        return split_card_id(self.id)[0]

    @property
    def task(self) -> str:
        return split_card_id(self.id)[1]

    def reference_reward_path(self) -> Path | None:
        """The hand-written reference reward stored beside the card (same stem, ``.py``)."""
        if self.path is None:
            return None
        p = self.path.with_suffix(".py")
        return p if p.is_file() else None

    # -- checking against the live environment ---------------------------------------------
    def check_live(self, env: Any, steps: int = 3, seed: int = 0, episode_limit: int | None = None) -> None:
        """Check spaces, sources and the episode length against a live env; raise :class:`UserError`
        naming every mismatch.

        :param env: the gymnasium env made from this card (see :func:`rewardlab.sims.make_env`)
        :param steps: random steps to take while evaluating every source
        :param episode_limit: the step count after which the env ends episodes by itself, when its
            adapter knows one (MetaWorld's ``max_path_length``); it must not cut the card's episodes short
        """
        problems: list[str] = list(self.action.mismatch(env.action_space, "action"))
        obs_space = env.observation_space
        if self.observation is not None:
            problems += self.observation.mismatch(obs_space, "observation")
        if episode_limit is not None and episode_limit < self.episode_steps:
            problems.append(f"episode_steps is {self.episode_steps} but the env ends every episode after "
                            f"{episode_limit} steps")
        obs_dim = int(np.prod(obs_space.shape)) if obs_space.shape else 1
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps + 1):
            flat_obs = np.asarray(obs).reshape(-1)
            for name, spec in self.fields().items():
                if spec.kind == "obs":
                    try:
                        cols = spec.obs_columns(obs_dim)
                    except IndexError:
                        problems.append(f"{name}: {spec.source} is outside the {obs_dim}-d observation")
                        continue
                    value = flat_obs[cols]
                else:
                    try:
                        value = np.asarray(eval_source(compile(spec.source, name, "eval"), env), dtype=float)
                    except Exception as e:  # a wrong accessor is the user's error: name it
                        problems.append(f"{name}: source {spec.source!r} failed: {type(e).__name__}: {e}")
                        continue
                if value.size != spec.size:
                    problems.append(f"{name}: {spec.source} has {value.size} values, shape {spec.shape} needs {spec.size}")
                elif not np.all(np.isfinite(np.asarray(value, dtype=float))):
                    problems.append(f"{name}: {spec.source} is not finite")
            if problems:
                break
            obs, *_ = env.step(env.action_space.sample())
        if problems:
            raise UserError(f"env card {self.label} does not match the live env: " + "; ".join(dict.fromkeys(problems)))


# -- simulator sources ---------------------------------------------------------------------------
def sim_namespace(env: Any) -> dict[str, Any]:
    """Names a ``sim`` source is evaluated against: the unwrapped env and its MuJoCo data/model."""
    base = getattr(env, "unwrapped", env)
    return {"env": base, "data": getattr(base, "data", None), "model": getattr(base, "model", None), "np": np}


def eval_source(code: Any, env: Any) -> Any:
    """Evaluate a compiled ``sim`` source on one env (cards are trusted configuration, checked by
    :class:`FieldSpec` to be attribute/subscript/call chains from ``data``, ``model``, ``env``)."""
    return eval(code, {"__builtins__": builtins}, sim_namespace(env))  # noqa: S307


# -- loading -------------------------------------------------------------------------------------
def _card_files() -> list[Path]:
    return sorted(resource_dir("envs").rglob("*.yaml"))


@lru_cache(maxsize=1)
def card_index() -> dict[str, Path]:
    """Map every shipped card id to its file."""
    index: dict[str, Path] = {}
    for path in _card_files():
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            index[data["id"]] = path
    return index


def read_text_file(path: Path, what: str) -> str:
    """A file's text, or :class:`UserError` naming it when it cannot be read or is not UTF-8 text.

    :param what: what the file is, for the message (``env card``, ``reward program``, ``spec``)
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if b"\x00" in data:
        raise UserError(f"{what} {path} is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                        "save it as UTF-8") from None


def load_card(id_or_path: str | Path) -> EnvCard:
    """Load and validate a card by id (``mujoco/HalfCheetah-v5``) or by path to a YAML file.

    Raises :class:`UserError` with one line naming the problem (and the file, for a path) for unknown
    ids, unreadable or non-text files, invalid fields and unregistered simulators. Checks against the
    live env are :func:`rewardlab.sims.verify_card`'s.
    """
    path = Path(id_or_path)
    given = path.suffix in (".yaml", ".yml") and path.is_file()
    if not given:
        index = card_index()
        if str(id_or_path) not in index:
            if path.suffix in (".yaml", ".yml"):
                raise UserError(f"env card file {path} does not exist")
            near = difflib.get_close_matches(str(id_or_path), list(index), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(near)}?" if near else "; `rewardlab envs list` shows them all"
            raise UserError(f"unknown env id {str(id_or_path)!r}{hint}")
        path = index[str(id_or_path)]
    try:
        data = yaml.safe_load(read_text_file(path, "env card"))
    except yaml.YAMLError as e:
        raise UserError(f"env card {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"env card {path} must be a mapping of fields, got {type(data).__name__}")
    try:
        card = EnvCard(**data)
    except ValidationError as e:
        raise UserError(f"env card {path}: {describe_validation_error(e)}") from None
    except TypeError as e:  # keys that are not strings
        raise UserError(f"env card {path}: {e}") from None
    try:
        check_simulator_name(card.simulator)
    except UserError as e:
        raise UserError(f"env card {path}: {e}") from None
    card.path = path
    if given:
        card._given = str(id_or_path)
    return card


#: Tags pydantic puts in error locations of tagged unions; they mean nothing to a card's author.
_UNION_TAGS = {"box", "discrete", "multidiscrete", "field", "entity"}


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as one line: ``field 'a.b': message; field 'c': message``."""
    parts = []
    for err in error.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"] if p not in _UNION_TAGS) or "(top level)"
        parts.append(f"field {loc!r}: {err['msg']}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def list_cards() -> list[EnvCard]:
    """Every shipped card, sorted by id."""
    return [load_card(p) for _, p in sorted(card_index().items())]


# -- prompt rendering ----------------------------------------------------------------------------
def _class_name(entity: str) -> str:
    """``cubeA`` -> ``CubeA``, ``obj_1`` -> ``Obj1``: each part's first letter raised, the rest kept."""
    return "".join(part[0].upper() + part[1:] for part in re.split(r"[_\W]+", entity) if part)


def _stub_line(name: str, spec: FieldSpec) -> str:
    shape = "(B,)" if not spec.shape else "(B, " + ", ".join(map(str, spec.shape)) + ")"
    unit = f", {spec.unit}" if spec.unit else ""
    return f"    {name}: np.ndarray  # {shape}{unit}: {spec.doc}".rstrip(": ")


def render_stubs(card: EnvCard, action: bool = True) -> str:
    """Render the card as Python class stubs: one class per entity, then the env (``self``).

    :param action: end with a comment describing the action (prompts state the action elsewhere)
    """
    blocks: list[str] = []
    env_lines: list[str] = []
    for name, value in card.entities.items():
        if isinstance(value, FieldSpec):
            env_lines.append(_stub_line(name, value))
            continue
        cls = _class_name(name)
        lines = [f"class {cls}:"] + [_stub_line(f, s) for f, s in value.items()]
        blocks.append("\n".join(lines))
        env_lines.append(f"    {name}: {cls}")
    env = [
        "class Env:  # `self` in compute_dense_reward(self, action); every array has a leading batch dimension B",
        *env_lines,
    ]
    if action:
        env += ["", f"# action: {card.action.describe()}"]
    return "\n\n".join(blocks + ["\n".join(env)])
