"""Experiment specs: which tasks, reward sources, trainer and algorithms, seeds, and for how long.

A spec is a YAML file validated by :class:`ExperimentSpec`::

    name: quickstart
    description: PPO on the pendulum with the env's reward and the reference reward.
    tasks: [mujoco/InvertedPendulum-v5]
    rewards:
      - env                                  # the env's own reward
      - reference                            # the hand-written reference beside each card
      - rewards/upright.py                   # a program file, relative to this spec's folder
      - {name: llm-best, path: gen/best.py}  # a program file under a chosen name
      - {name: zero-shot, generate: {samples: 1, rounds: 1, probe_steps: 0}}  # generated per task
      - {name: pbrs, base: env, shaper: {name: pbrs, potential: phi.py}}      # shaped
    trainer: sb3                             # a registered trainer (default sb3)
    algorithms: [ppo]
    seeds: [0, 1, 2]
    budget: {steps: 100000}
    evaluation: {episodes: 5, every: 10000}
    workers: 2

The reward sources are :data:`rewardlab.sources.RewardSource` (every form it accepts), the budget and
evaluation the same :class:`~rewardlab.config.Budget` and :class:`~rewardlab.config.Evaluation` models
the CLI validates its flags with. :meth:`ExperimentSpec.trials` expands tasks × rewards × algorithms ×
seeds (linearly) into :class:`TrialSpec`\\ s, each with a stable ``key``
(``mujoco/InvertedPendulum-v5|reference|ppo|0``) that the run store uses to recognise finished trials
when a run is resumed.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rewardlab.cards import load_card, read_text_file
from rewardlab.config import Budget, Evaluation, TrainConfig
from rewardlab.errors import UserError
from rewardlab.paths import safe_name
from rewardlab.sources import FileSource, ReferenceSource, RewardSource, source_shorthand_validator
from rewardlab.types import Seed

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _known_card(card_id: str) -> str:
    try:
        load_card(card_id)
    except UserError as e:
        raise ValueError(str(e)) from None
    return card_id


CardId = Annotated[str, AfterValidator(_known_card)]
SpecSource = Annotated[RewardSource, BeforeValidator(source_shorthand_validator)]


class ExperimentSpec(BaseModel):
    """An experiment: the product tasks × rewards × algorithms × seeds, with budget and evaluation.

    See the module docstring for the YAML form.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="names the run (directory <name>-<timestamp>) and is the key for --resume")
    description: str = Field(default="", description="what the experiment shows, in words")
    tasks: list[CardId] = Field(min_length=1, description="env card ids, e.g. mujoco/HalfCheetah-v5")
    rewards: list[SpecSource] = Field(
        min_length=1, description="reward sources: env, reference, a program path, {name, path}, generated, shaped"
    )
    trainer: str = Field(default="sb3", description="registered trainer name")
    algorithms: list[str] = Field(min_length=1, description="the trainer's algorithms (sb3: ppo, sac, td3, dqn, reinforce)")
    seeds: list[Seed] = Field(min_length=1, description="training seeds, one trial each")
    budget: Budget = Field(description="training budget per trial")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="evaluation settings")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="replace the preset's values")
    workers: int = Field(default=2, gt=0, le=1024, description="trials run in parallel (worker processes)")

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name {v!r} may hold only letters, digits, '_', '.' and '-' (it names a directory)")
        return v

    @field_validator("trainer")
    @classmethod
    def _known_trainer(cls, v: str) -> str:
        from rewardlab.training import get_trainer

        try:
            get_trainer(v)
        except UserError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, v: list[str], info: Any) -> list[str]:
        from rewardlab.training import get_trainer

        if "trainer" not in info.data:  # the trainer itself was refused; that error is reported
            return v
        trainer = get_trainer(info.data["trainer"])
        for i, algo in enumerate(v):
            if algo not in trainer.algorithms:
                raise ValueError(f"unknown algorithm {algo!r} for trainer {trainer.name!r}; expected one of "
                                 f"{', '.join(trainer.algorithms)} (entry {i})")
        return v

    @model_validator(mode="after")
    def _check_combinations(self) -> ExperimentSpec:
        for field, values in (
            ("tasks", list(self.tasks)),
            ("rewards", [r.name for r in self.rewards]),
            ("algorithms", list(self.algorithms)),
            ("seeds", list(self.seeds)),
        ):
            dupes = sorted(str(v) for v, n in Counter(values).items() if n > 1)  # linear in the list
            if dupes:
                raise ValueError(f"{field} lists {', '.join(dupes)} more than once")
        for source in self.rewards:  # a per-task program file must exist for every task
            files = [source, getattr(source, "base", None)]
            for file in (f for f in files if isinstance(f, FileSource) and f.per_task):
                for task in self.tasks:
                    try:
                        file.path_for(task)
                    except UserError as e:
                        raise ValueError(str(e).removeprefix(f"reward {file.name!r}: ")) from None
        if any(isinstance(r, ReferenceSource) for r in self.rewards):
            for task in self.tasks:
                if load_card(task).reference_reward_path() is None:
                    raise ValueError(
                        f"rewards: 'reference' needs a hand-written reference reward beside the card of "
                        f"{task}, and there is none"
                    )
        return self

    def train_config(self, algo: str, seed: int) -> TrainConfig:
        return TrainConfig(trainer=self.trainer, algo=algo, seed=seed, budget=self.budget,
                           evaluation=self.evaluation, overrides=dict(self.hyperparameters))

    def trials(self) -> list[TrialSpec]:
        """Every trial of the experiment, in the order tasks × rewards × algorithms × seeds."""
        trials = [
            TrialSpec(task=task, reward=reward, config=self.train_config(algo, seed))
            for task, reward, algo, seed in itertools.product(self.tasks, self.rewards, self.algorithms, self.seeds)
        ]
        dirs = Counter(t.dir_name for t in trials)
        if any(n > 1 for n in dirs.values()):  # e.g. tasks "a/b" and "a_b"
            raise UserError(f"spec {self.name!r}: two trials map to the same directory; rename a task or reward")
        return trials


@dataclass(frozen=True)
class TrialSpec:
    """One training run: a task, a reward source and the training settings (algorithm, seed, budget).

    :param task: env card id
    :param reward: the reward source as the spec gives it
    :param config: trainer, algorithm, seed, budget, evaluation
    """

    task: str
    reward: RewardSource
    config: TrainConfig

    @property
    def reward_name(self) -> str:
        return self.reward.name

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def steps(self) -> int:
        return self.config.budget.steps

    @property
    def key(self) -> str:
        """Stable identity within a run: ``task|reward|algo|seed``."""
        return f"{self.task}|{self.reward_name}|{self.algo}|{self.seed}"

    @property
    def dir_name(self) -> str:
        """The key as a directory name: ``mujoco_InvertedPendulum-v5__reference__ppo__s0``."""
        return "__".join([safe_name(self.task), safe_name(self.reward_name), self.algo, f"s{self.seed}"])


def _describe(err: Any) -> tuple[str, str]:
    """(field path, problem) of one pydantic error, in words a spec author reads."""
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return loc, "unknown field"
    if kind == "missing":
        return loc, "missing required field"
    if kind == "value_error":  # our own validators: the message already says it all
        return loc, msg.removeprefix("Value error, ")
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if kind == "too_short":
        return loc, "needs at least one entry"
    if kind in ("model_type", "model_attributes_type", "dict_type", "union_tag_invalid", "union_tag_not_found"):
        if re.fullmatch(r"rewards\.\d+", loc):
            return loc, f"a reward source is 'env', 'sparse', 'reference', a program path or {{name, path}} (got {shown})"
        return loc, f"should be a mapping of fields (got {shown})"
    return loc, f"{msg.removeprefix('Input ')} (got {shown})"


_UNION_TAGS = {"env", "sparse", "reference", "file", "inline", "generated", "shaped"}


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
        # an unknown field first: a typo (`step:`) also makes the field it meant "missing"
        errors = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        loc, problem = _describe(errors[0])
        where = f"field {loc!r}: " if loc else ""
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise UserError(f"spec {source}: {where}{problem}{more}") from None
    except UserError as e:  # a validator that looked something up (an unknown trainer)
        raise UserError(f"spec {source}: {e}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Load and validate an experiment spec file.

    Raises :class:`UserError` with one line naming the file, the field path and the problem (unknown
    field, wrong type, unknown env id or algorithm, missing reward file, not UTF-8 text).

    :param path: the YAML spec file
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(read_text_file(path, "spec"))
    except yaml.YAMLError as e:
        raise UserError(f"spec {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent)
