"""Reward sources: where the reward a trial trains on comes from, as one typed union, and the one
resolver that turns a source into something a trainer can use.

===============  ==================================================  =====================================
kind             YAML (in a spec's ``rewards:`` or ``--reward``)      resolves to
===============  ==================================================  =====================================
``env``          ``env`` (or ``builtin``)                            :data:`NATIVE`, the env's own reward
``sparse``       ``sparse``                                          :data:`SPARSE`: 1 when the card's success rule holds
``reference``    ``reference``                                       the hand-written program beside the card
``file``         ``path/to/reward.py`` or ``{name, path}``           the program in the file
``inline``       ``{name, source: "def compute_dense_reward..."}``   the program in the text
``generated``    ``{name, generate: {samples: 4, ...}}``             a program the generation loop wrote
``shaped``       ``{name, base: <source>, shaper: {name, ...}}``     the base reward plus a shaper
===============  ==================================================  =====================================

Everything downstream passes :class:`~rewardlab.program.RewardProgram` objects, never files written
and read back. Generated sources need the generation loop, which sits above this module: the caller
that owns it (the runner, the CLI) passes it to :func:`resolve_source` as ``generate``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from rewardlab.cards import EnvCard, split_card_id
from rewardlab.config import GenerationConfig, describe_validation_error
from rewardlab.errors import UserError
from rewardlab.program import RewardProgram, load_program, reference_program
from rewardlab.shaping.registry import check_shaper

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="the name shown in trial keys, directories and report tables")

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME.match(v) or "|" in v:
            raise ValueError(f"reward name {v!r} may hold only letters, digits, '_', '.' and '-'")
        return v


class EnvSource(_Source):
    """The env's own reward."""

    kind: Literal["env"] = "env"
    name: str = "env"


class SparseSource(_Source):
    """The task's sparse reward: 1 at a step where the card's success rule holds, else 0 (any card with
    a success rule; the baseline that reward design exists to beat)."""

    kind: Literal["sparse"] = "sparse"
    name: str = "sparse"


class ReferenceSource(_Source):
    """The hand-written reference reward stored beside the card (``envs/<family>/<task>.py``)."""

    kind: Literal["reference"] = "reference"
    name: str = "reference"


#: Placeholders a per-task program path may hold (``rewards/{family}/{task}.py``).
PATH_FIELDS = ("task", "family")


class FileSource(_Source):
    """A reward program file, or one per task: a path holding ``{task}`` and/or ``{family}``
    (``rewards/{task}.py``, ``reward_code/{task}/general.py``) names each task's own file, filled in
    from the card id (``metaworld/drawer-open-v3``: family ``metaworld``, task ``drawer-open-v3``).
    A relative path is resolved against the spec's folder when a spec is loaded
    (``context={"base_dir": ...}``). A single file must exist when the source is parsed; a per-task
    file when the task's trials are expanded (:meth:`path_for`)."""

    kind: Literal["file"] = "file"
    path: str

    @field_validator("path")
    @classmethod
    def _resolve(cls, v: str, info: Any) -> str:
        base = Path((info.context or {}).get("base_dir", ".")) if info.context else Path(".")
        path = Path(v).expanduser()
        path = path if path.is_absolute() else base / path
        fields = {name for _, name, _, _ in string.Formatter().parse(str(path)) if name is not None}
        if fields - set(PATH_FIELDS) or any(name == "" for name in fields):
            bad = sorted(f"{{{name}}}" for name in fields - set(PATH_FIELDS))
            raise ValueError(f"reward program path {v!r} may hold only {{task}} and {{family}}, not {', '.join(bad)}")
        if not fields and not path.is_file():
            raise ValueError(f"reward program file {str(path)!r} does not exist")
        return str(path.resolve())

    @property
    def per_task(self) -> bool:
        """True when the path names each task's own file."""
        return any(f"{{{name}}}" in self.path for name in PATH_FIELDS)

    def path_for(self, card_id: str) -> Path:
        """The program file of one task.

        :raises UserError: one line naming the task whose file is missing
        """
        family, task = split_card_id(card_id)
        path = Path(self.path.format(task=task, family=family))
        if not path.is_file():
            what = f"{card_id}'s program" if self.per_task else "program"
            raise UserError(f"reward {self.name!r}: {what} {path} does not exist")
        return path


class InlineSource(_Source):
    """A program given as text (what the runner hands workers, and what generation produces).

    :param origin: where the text came from (a file path, ``generated:<run>``, ``llm:<exchange>``)
    :param parent: sha256 of the program it was revised from, if any
    """

    kind: Literal["inline"] = "inline"
    source: str
    origin: str = "inline"
    parent: str | None = None


class GeneratedSource(_Source):
    """A program generated per task by the Text2Reward/Eureka loop before the task's trials train."""

    kind: Literal["generated"] = "generated"
    generate: GenerationConfig = Field(default_factory=GenerationConfig)


class ShaperSpec(BaseModel):
    """A shaper by registered name, with its parameters (``{name: pbrs, potential: phi.py, gamma: 0.99}``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        check_shaper(v)
        return v


class ShapedSource(_Source):
    """A base reward plus a shaper (PBRS, and the thesis' shapers as they are added)."""

    kind: Literal["shaped"] = "shaped"
    base: RewardSource = Field(default_factory=EnvSource)
    shaper: ShaperSpec


RewardSource = Annotated[
    EnvSource | SparseSource | ReferenceSource | FileSource | InlineSource | GeneratedSource | ShapedSource,
    Field(discriminator="kind"),
]
ShapedSource.model_rebuild()
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RewardSource)

_ENV_WORDS = ("env", "builtin")


def _is_source_text(text: str) -> bool:
    """Program text rather than a path (as :func:`rewardlab.program.load_program` decides)."""
    return "\n" in text or text.lstrip().startswith(("def ", "import ", "from "))


def _file_name(path: str) -> str:
    """The default name of a file source: the file's stem, or for a per-task path the last part that
    is the same for every task (``reward_code/{task}/general.py`` -> ``general``)."""
    parts = [p for p in Path(path).with_suffix("").parts if "{" not in p]
    return parts[-1] if parts else "per-task"


def _shorthand(data: Any) -> Any:
    """The YAML shorthands as tagged mappings (see the module docstring)."""
    if isinstance(data, str):
        if data in _ENV_WORDS:
            return {"kind": "env"}
        if data == "reference":
            return {"kind": "reference"}
        if data == "sparse":
            return {"kind": "sparse"}
        if _is_source_text(data):
            return {"kind": "inline", "name": "inline", "source": data}
        return {"kind": "file", "name": _file_name(data), "path": data}
    if isinstance(data, dict) and "kind" not in data:
        data = dict(data)
        if "generate" in data:
            if "path" in data:
                raise ValueError("a generated reward source takes no path: its program is generated per task")
            return {"kind": "generated", **data}
        if "shaper" in data:
            if "base" in data:
                data["base"] = _shorthand(data["base"])
            return {"kind": "shaped", **data}
        if "source" in data:
            return {"kind": "inline", **data}
        if data.get("path") in _ENV_WORDS:
            return {"kind": "env", **{k: v for k, v in data.items() if k != "path"}}
        if data.get("path") in ("reference", "sparse"):
            return {"kind": data["path"], **{k: v for k, v in data.items() if k != "path"}}
        if "path" in data:
            if "name" not in data and isinstance(data["path"], str):
                data["name"] = _file_name(data["path"])
            return {"kind": "file", **data}
    return data


class _Shorthand(BaseModel):
    """Validates one source written in any of its YAML forms."""

    source: RewardSource

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: Any) -> Any:
        return {"source": _shorthand(data)}


def parse_source(data: Any, base_dir: Path | None = None) -> RewardSource:
    """A reward source from its YAML or command-line form (``env``, ``reference``, a path, a mapping).

    :param base_dir: folder that relative program paths are resolved against (default: the working
        directory)
    :raises UserError: one line naming the problem
    """
    base = base_dir or Path(".")
    if (isinstance(data, str) and data not in (*_ENV_WORDS, "reference", "sparse") and not _is_source_text(data)
            and not any(f"{{{name}}}" in data for name in PATH_FIELDS)):
        path = Path(data).expanduser()
        if not (path if path.is_absolute() else base / path).is_file():
            raise UserError(f"reward program file not found: {data} (or give env, builtin, sparse or reference)")
    try:
        return _Shorthand.model_validate(data, context={"base_dir": base}).source
    except ValidationError as e:
        raise UserError(f"reward source {data!r}: {describe_validation_error(e)}") from None


def source_shorthand_validator(data: Any) -> Any:
    """For models that hold sources (the experiment spec): turn shorthands into tagged mappings."""
    return _shorthand(data)


# -- resolution ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NativeReward:
    """The env's own reward (nothing to compute)."""

    def __repr__(self) -> str:
        return "NATIVE"


#: The env's own reward, as resolved.
NATIVE = NativeReward()


@dataclass(frozen=True)
class SparseReward:
    """1 at a step where the card's success rule holds, else 0 (computed by the training wrapper,
    which sees the env's ``info`` as well as the state; a ``survived`` rule pays 1 at the step an
    episode reaches its time limit)."""

    def __repr__(self) -> str:
        return "SPARSE"


#: The sparse success reward, as resolved.
SPARSE = SparseReward()


@dataclass(frozen=True)
class ShapedReward:
    """A resolved base reward and the shaper to add to it at training time.

    :param base: the base reward (a program or :data:`NATIVE`)
    :param shaper: the shaper's name and parameters
    """

    base: RewardProgram | NativeReward | SparseReward
    shaper: ShaperSpec


#: What a trainer trains on.
ResolvedReward = RewardProgram | NativeReward | SparseReward | ShapedReward
#: The generation loop, as the caller that owns it provides it: ``(source, card) -> program``.
Generate = Callable[[GeneratedSource, EnvCard], RewardProgram]


def resolve_source(source: RewardSource, card: EnvCard, generate: Generate | None = None) -> ResolvedReward:
    """What a source means for one task: a :class:`RewardProgram`, :data:`NATIVE`, or a
    :class:`ShapedReward`.

    :param source: the reward source
    :param card: the task
    :param generate: the generation loop, for ``generated`` sources
    :raises UserError: the reference or file is missing or unreadable, the program is rejected by the
        static policy, a generated source has no ``generate``, or a shaper needs what the task lacks
    """
    if isinstance(source, EnvSource):
        return NATIVE
    if isinstance(source, SparseSource):
        if card.success_rule is None:
            raise UserError(f"reward source {source.name!r}: sparse pays when the task succeeds, and {card.label} "
                            "has no success rule")
        return SPARSE
    if isinstance(source, ReferenceSource):
        return reference_program(card)
    if isinstance(source, FileSource):
        return load_program(source.path_for(card.id))
    if isinstance(source, InlineSource):
        return RewardProgram(source.source, origin=source.origin, parent=source.parent)
    if isinstance(source, GeneratedSource):
        if generate is None:
            raise UserError(f"reward source {source.name!r} is generated: run it through `rewardlab run` or "
                            "`rewardlab generate`, which run the generation loop first")
        return generate(source, card)
    base = resolve_source(source.base, card, generate)
    if isinstance(base, ShapedReward):
        raise UserError(f"reward source {source.name!r}: a shaped source's base cannot itself be shaped")
    return ShapedReward(base, source.shaper)


def is_sparse(resolved: ResolvedReward) -> bool:
    """Whether a resolved reward is (or shapes) the sparse success reward."""
    return isinstance(resolved.base if isinstance(resolved, ShapedReward) else resolved, SparseReward)


def program_of(resolved: ResolvedReward) -> RewardProgram | None:
    """The reward program a resolved reward computes (a shaped reward's base), or None (native)."""
    base = resolved.base if isinstance(resolved, ShapedReward) else resolved
    return base if isinstance(base, RewardProgram) else None


def as_inline(resolved: ResolvedReward, name: str) -> RewardSource:
    """A resolved reward as a source that needs no file and no generation (what a worker process gets,
    so it trains on exactly the program the runner recorded)."""
    if isinstance(resolved, ShapedReward):
        base = as_inline(resolved.base, f"{name}-base")
        return ShapedSource(name=name, base=base, shaper=resolved.shaper)
    if isinstance(resolved, NativeReward):
        return EnvSource(name=name)
    if isinstance(resolved, SparseReward):
        return SparseSource(name=name)
    return InlineSource(name=name, source=resolved.source, origin=resolved.origin, parent=resolved.parent)
