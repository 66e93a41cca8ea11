"""Env cards: a compact, checked description of a task for reward design.

A card names the task, gives the instruction in plain words, lists the *entities* and their fields
(shape, unit, meaning and where each value comes from), the action, the success criterion and the
episode length. Cards are YAML files under ``envs/``; :func:`load_card` finds them by id or path,
:meth:`EnvCard.check_live` checks them against the real environment, and :func:`render_stubs` renders
them as the Pythonic class stubs that Text2Reward showed LLMs read best.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from rewardlab.errors import UserError
from rewardlab.resources import resource_dir

SIMULATORS = ("mujoco", "metaworld", "maniskill")
_OBS_SOURCE = re.compile(r"^obs\[\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?\]$")
# Names a simulator source may start from: the raw MjData/MjModel, the unwrapped env.
_SIM_ROOTS = {"data", "model", "env", "np"}


class FieldSpec(BaseModel):
    """One named value of the state view.

    :param source: ``obs[i]`` / ``obs[a:b]`` (a slice of the observation) or a simulator accessor such
        as ``data.qvel[0]`` or ``data.body('torso').xpos`` evaluated on the unwrapped env
    :param shape: shape per environment (``[]`` for a scalar)
    :param unit: physical unit, if any
    :param doc: what the value means, in words (shown to LLMs)
    """

    model_config = ConfigDict(extra="forbid")
    source: str
    shape: list[int] = Field(default_factory=list)
    unit: str | None = None
    doc: str = ""

    @field_validator("source")
    @classmethod
    def _source_is_safe(cls, v: str) -> str:
        v = v.strip()
        if _OBS_SOURCE.match(v):
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

    @property
    def kind(self) -> Literal["obs", "sim"]:
        return "obs" if _OBS_SOURCE.match(self.source) else "sim"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def obs_columns(self) -> list[int]:
        """Observation columns of an ``obs[..]`` source."""
        m = _OBS_SOURCE.match(self.source)
        assert m is not None
        start, stop = int(m.group(1)), m.group(2)
        return [start] if stop is None else list(range(start, int(stop)))


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
    Union[Annotated[FieldSpec, Tag("field")], Annotated[dict[str, FieldSpec], Tag("entity")]],
    Discriminator(_entity_kind),
]


class ActionSpec(BaseModel):
    """The action: shape, bounds and meaning."""

    model_config = ConfigDict(extra="forbid")
    shape: list[int]
    low: float | list[float]
    high: float | list[float]
    doc: str = ""


class EnvCard(BaseModel):
    """A task described for reward design (see module docstring)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    simulator: Literal["mujoco", "metaworld", "maniskill"]
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
    action: ActionSpec
    tips: list[str] = Field(default_factory=list, description="background knowledge for prompts")
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_success(self) -> "EnvCard":
        if self.success is not None:
            parse_success(self.success, set(self.fields()))
        return self

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
    def check_live(self, env: Any, steps: int = 3, seed: int = 0) -> None:
        """Check shapes, bounds and sources against a live env; raise :class:`UserError` on mismatch.

        :param env: the gymnasium env made from this card (see :func:`rewardlab.sims.make_env`)
        :param steps: random steps to take while evaluating every source
        """
        problems: list[str] = []
        act = env.action_space
        if tuple(act.shape) != tuple(self.action.shape):
            problems.append(f"action shape {list(act.shape)} in the env, {self.action.shape} in the card")
        else:
            for bound, env_bound in (("low", act.low), ("high", act.high)):
                card_bound = np.broadcast_to(np.asarray(getattr(self.action, bound), float), act.shape)
                if not np.allclose(card_bound, env_bound, atol=1e-6):
                    problems.append(f"action {bound} {env_bound.tolist()} in the env, {card_bound.tolist()} in the card")
        obs_dim = env.observation_space.shape[0]
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps + 1):
            for name, spec in self.fields().items():
                if spec.kind == "obs":
                    cols = spec.obs_columns()
                    if max(cols) >= obs_dim or min(cols) < -obs_dim:
                        problems.append(f"{name}: {spec.source} is outside the {obs_dim}-d observation")
                        continue
                    value = np.asarray(obs)[cols]
                    value = value.reshape(spec.shape) if value.size == spec.size else value
                else:
                    try:
                        value = np.asarray(eval_source(compile(spec.source, name, "eval"), env), dtype=float)
                    except Exception as e:  # a wrong accessor is the user's error: name it
                        problems.append(f"{name}: source {spec.source!r} failed: {type(e).__name__}: {e}")
                        continue
                if value.size != spec.size:
                    problems.append(f"{name}: {spec.source} has {value.size} values, shape {spec.shape} needs {spec.size}")
                elif not np.all(np.isfinite(value)):
                    problems.append(f"{name}: {spec.source} is not finite")
            if problems:
                break
            obs, *_ = env.step(env.action_space.sample())
        if problems:
            raise UserError(f"env card {self.id} does not match the live env: " + "; ".join(dict.fromkeys(problems)))


# -- success criterion -----------------------------------------------------------------------
@dataclass(frozen=True)
class SuccessRule:
    """A parsed success criterion. ``kind`` is ``info``, ``survived`` or ``threshold``."""

    kind: str
    key: str = ""
    op: str = ""
    value: float = 0.0


def parse_success(text: str, field_names: set[str] | None = None) -> SuccessRule:
    """Parse a card's ``success`` string (see :class:`EnvCard`)."""
    text = text.strip()
    if text == "survived":
        return SuccessRule("survived")
    if m := re.fullmatch(r"info\.(\w+)", text):
        return SuccessRule("info", key=m.group(1))
    if m := re.fullmatch(r"([\w.]+)\s*([<>])\s*(-?[\d.eE+-]+)", text):
        if field_names is not None and m.group(1) not in field_names:
            raise ValueError(f"success {text!r} names {m.group(1)!r}, which is not a field of the card")
        return SuccessRule("threshold", key=m.group(1), op=m.group(2), value=float(m.group(3)))
    raise ValueError(f"success {text!r} is not 'info.KEY', 'survived' or 'FIELD < NUMBER'")


# -- simulator sources ---------------------------------------------------------------------------
def sim_namespace(env: Any) -> dict[str, Any]:
    """Names a ``sim`` source is evaluated against: the unwrapped env and its MuJoCo data/model."""
    base = getattr(env, "unwrapped", env)
    return {"env": base, "data": getattr(base, "data", None), "model": getattr(base, "model", None), "np": np}


def eval_source(code: Any, env: Any) -> Any:
    """Evaluate a compiled ``sim`` source on one env (cards are trusted configuration, checked by
    :class:`FieldSpec` to be attribute/subscript/call chains from ``data``, ``model``, ``env``)."""
    return eval(code, {"__builtins__": builtins}, sim_namespace(env))


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
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            index[data["id"]] = path
    return index


def load_card(id_or_path: str | Path) -> EnvCard:
    """Load and validate a card by id (``mujoco/HalfCheetah-v5``) or by path to a YAML file.

    Raises :class:`UserError` with one line naming the problem for unknown ids, unreadable files and
    invalid fields.
    """
    path = Path(id_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        index = card_index()
        if str(id_or_path) not in index:
            near = difflib.get_close_matches(str(id_or_path), list(index), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(near)}?" if near else "; `rewardlab envs list` shows them all"
            raise UserError(f"unknown env id {str(id_or_path)!r}{hint}")
        path = index[str(id_or_path)]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"env card {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"env card {path} must be a mapping of fields, got {type(data).__name__}")
    try:
        card = EnvCard(**data)
    except ValidationError as e:
        raise UserError(f"env card {path}: {describe_validation_error(e)}") from None
    card.path = path
    return card


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as one line: ``field 'a.b': message; field 'c': message``."""
    parts = []
    for err in error.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"field {loc!r}: {err['msg']}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def list_cards() -> list[EnvCard]:
    """Every shipped card, sorted by id."""
    return [load_card(p) for _, p in sorted(card_index().items())]


# -- prompt rendering ----------------------------------------------------------------------------
def _class_name(entity: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", entity) if part)


def _stub_line(name: str, spec: FieldSpec) -> str:
    shape = "(B,)" if not spec.shape else "(B, " + ", ".join(map(str, spec.shape)) + ")"
    unit = f", {spec.unit}" if spec.unit else ""
    return f"    {name}: np.ndarray  # {shape}{unit}: {spec.doc}".rstrip(": ")


def render_stubs(card: EnvCard) -> str:
    """Render the card as Python class stubs: one class per entity, then the env (``self``)."""
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
    a = card.action
    low = a.low if isinstance(a.low, (int, float)) else "per-dim"
    high = a.high if isinstance(a.high, (int, float)) else "per-dim"
    env = [
        "class Env:  # `self` in compute_dense_reward(self, action); every array has a leading batch dimension B",
        *env_lines,
        "",
        f"# action: np.ndarray (B, {', '.join(map(str, a.shape))}) in [{low}, {high}]: {a.doc}",
    ]
    return "\n\n".join(blocks + ["\n".join(env)])
