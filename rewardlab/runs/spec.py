"""Experiment specs: which tasks, reward sources, algorithms and seeds to train, and for how long.

A spec is a YAML file validated by :class:`ExperimentSpec`::

    name: quickstart
    description: PPO on the pendulum with the env's reward and the reference reward.
    tasks: [mujoco/InvertedPendulum-v5]
    rewards:
      - env                                  # the env's own reward
      - reference                            # the hand-written reference beside each card
      - rewards/upright.py                   # a program file, relative to this spec's folder
      - {name: llm-best, path: gen/best.py}  # a program file under a chosen name
    algorithms: [ppo]
    seeds: [0, 1, 2]
    budget: {steps: 100000}
    evaluation: {episodes: 5, every: 10000}
    workers: 2

:meth:`ExperimentSpec.trials` expands the product tasks × rewards × algorithms × seeds into
:class:`TrialSpec`\\ s, each with a stable ``key`` (``mujoco/InvertedPendulum-v5|reference|ppo|0``)
that the run store uses to recognise finished trials when a run is resumed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rewardlab.cards import load_card
from rewardlab.errors import UserError

ALGORITHMS = ("ppo", "sac", "td3")
BUILTIN_REWARDS = ("env", "reference")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` as a file name: runs of characters other than letters, digits, ``_ . -`` become ``_``."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def _known_card(card_id: str) -> str:
    try:
        load_card(card_id)
    except UserError as e:
        raise ValueError(str(e)) from None
    return card_id


CardId = Annotated[str, AfterValidator(_known_card)]


class GenerateSettings(BaseModel):
    """A reward source generated per task by the Text2Reward loop before its trials train on it.

    Field meanings as in :class:`rewardlab.text2reward.loop.GenerationConfig`; ``rewardlab run
    --provider/--model/--base-url`` override the provider fields of every generated source.
    """

    model_config = ConfigDict(extra="forbid")
    provider: str = Field(default="offline", description="openai, replay or offline (the no-LLM baseline)")
    model: str | None = Field(default=None, description="model name")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint")
    few_shot: int = Field(default=0, ge=0, description="retrieved examples in the prompt (0: zero-shot)")
    samples: int = Field(default=1, gt=0, description="programs per round (Text2Reward: 1)")
    rounds: int = Field(default=1, gt=0, description="rounds of training reflection (Text2Reward: 1)")
    probe_steps: int = Field(default=0, ge=0, description="training probe per candidate (0: rank by checks)")
    fix_attempts: int = Field(default=2, ge=0, description="execution-error feedback retries per candidate")
    temperature: float = Field(default=0.7, ge=0, description="sampling temperature")
    max_tokens: int = Field(default=2048, gt=0, description="cap on each reply")
    token_budget: int | None = Field(default=None, gt=0, description="stop asking after this many tokens")
    seed: int = Field(default=0, ge=0, description="seed of sampling and probes")


class RewardSource(BaseModel):
    """One reward source of the spec: ``env``, ``reference``, a reward program file, or generated.

    In YAML a source is either a string (``env``, ``reference`` or a path), ``{name, path}``, or
    ``{name, generate: {...}}`` (see :class:`GenerateSettings`).

    :param name: the name shown in keys, directories and report tables (a file's stem by default)
    :param path: ``env``, ``reference`` or the program file; relative paths are resolved against the
        spec file's folder when the spec is loaded with :func:`load_spec`
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="name used in trial keys, directories and tables")
    path: str = Field(description="'env', 'reference' or a reward program file ('generate:NAME' when generated)")
    generate: GenerateSettings | None = Field(default=None, description="generate the program per task first")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            name = data if data in BUILTIN_REWARDS else Path(data).stem
            return {"name": name, "path": data}
        if isinstance(data, dict) and "generate" in data:
            if "path" in data:
                raise ValueError("a generated reward source takes no path: its program is generated per task")
            return {**data, "path": f"generate:{data.get('name', '')}"}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME.match(v) or "|" in v:
            raise ValueError(f"reward name {v!r} may hold only letters, digits, '_', '.' and '-'")
        return v

    @field_validator("path")
    @classmethod
    def _file_exists(cls, v: str, info: ValidationInfo) -> str:
        if v in BUILTIN_REWARDS or v.startswith("generate:"):
            return v
        base = Path((info.context or {}).get("base_dir", "."))
        path = Path(v).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"reward program file {str(path)!r} does not exist")
        return str(path.resolve())

    @property
    def is_program_file(self) -> bool:
        return self.path not in BUILTIN_REWARDS and self.generate is None


class Budget(BaseModel):
    """How long each trial trains."""

    model_config = ConfigDict(extra="forbid", strict=True)
    steps: int = Field(gt=0, description="environment steps per trial")


class Evaluation(BaseModel):
    """How trained policies are evaluated (deterministic actions)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    episodes: int = Field(default=5, gt=0, description="episodes per evaluation")
    every: int | None = Field(
        default=None, gt=0, description="evaluate every this many env steps (None: the trainer's default)"
    )


class ExperimentSpec(BaseModel):
    """An experiment: the product tasks × rewards × algorithms × seeds, with budget and evaluation.

    See the module docstring for the YAML form.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="names the run (directory <name>-<timestamp>) and is the key for --resume")
    description: str = Field(default="", description="what the experiment shows, in words")
    tasks: list[CardId] = Field(min_length=1, description="env card ids, e.g. mujoco/HalfCheetah-v5")
    rewards: list[RewardSource] = Field(
        min_length=1, description="reward sources: env, reference, a program path or {name, path}"
    )
    algorithms: list[Literal["ppo", "sac", "td3"]] = Field(min_length=1, description="SB3 algorithms")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, description="training seeds, one trial each")
    budget: Budget = Field(description="training budget per trial")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="evaluation settings")
    workers: int = Field(default=2, gt=0, description="trials run in parallel (worker processes)")

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name {v!r} may hold only letters, digits, '_', '.' and '-' (it names a directory)")
        return v

    @model_validator(mode="after")
    def _check_combinations(self) -> "ExperimentSpec":
        for field, values in (
            ("tasks", self.tasks),
            ("rewards", [r.name for r in self.rewards]),
            ("algorithms", self.algorithms),
            ("seeds", self.seeds),
        ):
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{field} lists {', '.join(dupes)} more than once")
        if any(r.path == "reference" for r in self.rewards):
            for task in self.tasks:
                if load_card(task).reference_reward_path() is None:
                    raise ValueError(
                        f"rewards: 'reference' needs a hand-written reference reward beside the card of "
                        f"{task}, and there is none"
                    )
        return self

    def trials(self) -> list["TrialSpec"]:
        """Every trial of the experiment, in the order tasks × rewards × algorithms × seeds."""
        trials = [
            TrialSpec(
                task=task,
                reward_name=reward.name,
                reward=reward.path,
                algo=algo,
                seed=seed,
                steps=self.budget.steps,
                eval_episodes=self.evaluation.episodes,
                eval_every=self.evaluation.every,
            )
            for task, reward, algo, seed in itertools.product(self.tasks, self.rewards, self.algorithms, self.seeds)
        ]
        dirs = [t.dir_name for t in trials]
        if len(set(dirs)) != len(dirs):  # e.g. tasks "a/b" and "a_b"
            raise UserError(f"spec {self.name!r}: two trials map to the same directory; rename a task or reward")
        return trials


@dataclass(frozen=True)
class TrialSpec:
    """One training run: a task, a reward source, an algorithm and a seed.

    :param task: env card id
    :param reward_name: the reward source's name (shown in keys and tables)
    :param reward: what :func:`rewardlab.training.train` takes: ``env``, ``reference`` or an absolute
        path to a program file
    :param algo: ``ppo``, ``sac`` or ``td3``
    :param seed: training seed
    :param steps: environment steps to train for
    :param eval_episodes: episodes per evaluation
    :param eval_every: evaluate every this many steps (None: the trainer's default)
    """

    task: str
    reward_name: str
    reward: str
    algo: str
    seed: int
    steps: int
    eval_episodes: int = 5
    eval_every: int | None = None

    @property
    def key(self) -> str:
        """Stable identity within a run: ``task|reward|algo|seed``."""
        return f"{self.task}|{self.reward_name}|{self.algo}|{self.seed}"

    @property
    def dir_name(self) -> str:
        """The key as a directory name: ``mujoco_InvertedPendulum-v5__reference__ppo__s0``."""
        return "__".join([safe_name(self.task), safe_name(self.reward_name), self.algo, f"s{self.seed}"])


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    """(field path, problem) of one pydantic error, in words a spec author reads."""
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return loc, "unknown field"
    if kind == "missing":
        return loc, "missing required field"
    if kind == "value_error":  # our own validators: the message already says it all
        return loc, msg.removeprefix("Value error, ")
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if kind == "literal_error" and loc.startswith("algorithms"):
        return loc, f"unknown algorithm {shown}; expected one of {', '.join(ALGORITHMS)}"
    if kind == "too_short":
        return loc, "needs at least one entry"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if re.fullmatch(r"rewards\.\d+", loc):
            return loc, f"a reward source is 'env', 'reference', a program path or {{name, path}} (got {shown})"
        return loc, f"should be a mapping of fields (got {shown})"
    return loc, f"{msg.removeprefix('Input ')} (got {shown})"


def parse_spec(data: Any, source: str = "<spec>", base_dir: Path | None = None) -> ExperimentSpec:
    """Validate already-parsed YAML data as a spec; raise :class:`UserError` naming the field.

    :param data: the YAML document (a mapping)
    :param source: where the data came from, for messages
    :param base_dir: folder that relative reward program paths are resolved against
    """
    if not isinstance(data, dict):
        raise UserError(f"spec {source} must be a mapping of fields, got {type(data).__name__}")
    try:
        return ExperimentSpec.model_validate(data, context={"base_dir": base_dir or Path(".")})
    except ValidationError as e:
        errors = e.errors()
        loc, problem = _describe(errors[0])
        where = f"field {loc!r}: " if loc else ""
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise UserError(f"spec {source}: {where}{problem}{more}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Load and validate an experiment spec file.

    Raises :class:`UserError` with one line naming the file, the field path and the problem (unknown
    field, wrong type, unknown env id or algorithm, missing reward file).

    :param path: the YAML spec file
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"spec {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent)
