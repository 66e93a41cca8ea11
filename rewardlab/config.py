"""Configuration models shared by the command line and experiment specs: one model per concept.

CleanRL keeps one ``Args`` dataclass whose fields each carry a line of help; here each concept (a
training budget, an evaluation, a trial's training settings, a generation run) is one pydantic model
whose fields carry their bounds and help. The CLI builds its options from these fields
(:func:`rewardlab.cli.options.option`) and the spec nests the same models, so both validate the same
values the same way and share one set of defaults.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewardlab.errors import UserError
from rewardlab.types import Seed

#: Steps beyond this are refused: they would overflow counters on the way (SQLite, SB3's int64), and
#: at the CPU throughputs of rewardlab's trainers (about 80-1,600 steps/s) they would take centuries.
MAX_STEPS = 10**12


class Budget(BaseModel):
    """How long each trial trains."""

    model_config = ConfigDict(extra="forbid", strict=True)
    steps: int = Field(gt=0, le=MAX_STEPS, description="environment steps per trial")


class Evaluation(BaseModel):
    """How trained policies are evaluated: deterministic actions on seeded evaluation envs."""

    model_config = ConfigDict(extra="forbid", strict=True)
    episodes: int = Field(default=5, gt=0, le=10_000, description="episodes per evaluation")
    every: int | None = Field(
        default=None, gt=0, description="evaluate every this many env steps (None: a tenth of the budget)"
    )


class TrainConfig(BaseModel):
    """What a trainer needs besides the task and the reward: which trainer and algorithm, the seed,
    the budget and the evaluation.

    :param trainer: a registered trainer name (:func:`rewardlab.training.get_trainer`)
    :param algo: the trainer's algorithm (``ppo``, ``sac``, ``td3``, ``dqn``, ``reinforce`` for ``sb3``)
    :param seed: seed of the agent, the training envs and (offset) the evaluation envs
    :param budget: environment steps to train for
    :param evaluation: evaluation episodes and interval
    :param overrides: hyperparameters replacing the preset's
    """

    model_config = ConfigDict(extra="forbid")
    trainer: str = Field(default="sb3", description="registered trainer name")
    algo: str = Field(default="ppo", description="the trainer's algorithm, e.g. ppo, sac, td3, dqn or reinforce")
    seed: Seed = 0
    budget: Budget
    evaluation: Evaluation = Field(default_factory=Evaluation)
    overrides: dict[str, Any] = Field(default_factory=dict, description="hyperparameters replacing the preset's")


class CheckConfig(BaseModel):
    """The pre-training check of a reward program (``rewardlab check``)."""

    model_config = ConfigDict(extra="forbid")
    states: int = Field(default=256, ge=1, le=100_000, description="sampled states to run the program on")
    seed: Seed = Field(default=0, description="seed of the sampling rollouts")


class GenerationConfig(BaseModel):
    """How the Text2Reward/Eureka generation loop searches for a reward program for one task.

    The same model is the ``generate:`` block of a generated reward source in a spec and the options of
    ``rewardlab generate`` / ``refine``, with the same defaults.
    """

    model_config = ConfigDict(extra="forbid")
    instruction: str | None = Field(default=None, description="the task in words (default: the card's)")
    provider: str = Field(default="offline", description="openai (any OpenAI-compatible endpoint), replay "
                          "(stored replies) or offline (the labelled no-LLM baseline)")
    model: str | None = Field(default=None, description="model name (else $REWARDLAB_MODEL)")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint (else $OPENAI_BASE_URL)")
    api_key: str | None = Field(default=None, exclude=True, repr=False,
                                description="API key (else $OPENAI_API_KEY); never stored")
    samples: int = Field(default=4, ge=1, le=1000, description="programs asked for per round (Eureka's K)")
    rounds: int = Field(default=3, ge=1, le=1000, description="rounds of training reflection")
    few_shot: int = Field(default=0, ge=0, le=100, description="retrieved reference rewards in the prompt (0: zero-shot)")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(default=2048, gt=0, description="cap on each reply's length")
    token_budget: int | None = Field(default=None, gt=0, description="stop asking after this many tokens")
    fix_attempts: int = Field(default=2, ge=0, le=100, description="execution-error feedback retries per candidate")
    probe_steps: int = Field(default=20_000, ge=0, le=MAX_STEPS,
                             description="training steps of each candidate's probe (0: rank by the checks)")
    probe_algo: str | None = Field(default=None, description="algorithm of the probes (default: sac on MetaWorld, else ppo)")
    final_steps: int = Field(default=0, ge=0, le=MAX_STEPS, description="train the best program this long at the end")
    eval_episodes: int = Field(default=3, gt=0, le=10_000, description="evaluation episodes of probes")
    success_target: float | None = Field(default=None, ge=0.0, le=1.0,
                                         description="stop once a probe reaches this success rate")
    use_memory: bool = Field(default=True, description="feed stored (failing code, feedback, fix) examples into error prompts")
    seed: Seed = Field(default=0, description="seed of sampling requests, probes and evaluations")
    timeout_s: float = Field(default=120.0, gt=0, description="seconds per HTTP attempt")
    max_retries: int = Field(default=3, ge=0, le=20, description="retries of a failed request")
    replay_run: str | None = Field(default=None, description="with --provider replay: the generation run to replay "
                                   "(default: the latest one of the same task with stored replies)")


M = TypeVar("M", bound=BaseModel)


def validate_config(model: type[M], data: dict[str, Any], source: str, names: dict[str, str] | None = None) -> M:
    """Validate ``data`` as ``model``; raise :class:`UserError` with one line naming the field.

    :param source: what the values came from, for the message (``rewardlab train``, a spec path)
    :param names: how the user spells each field (``{"episodes": "--eval-episodes"}``)
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UserError(f"{source}: {describe_validation_error(e, names)}") from None


def describe_validation_error(error: ValidationError, names: dict[str, str] | None = None, limit: int = 3) -> str:
    """A pydantic error as one line: ``--seed: must be >= 0 (got -1); field 'a.b': message``.

    :param names: field path (dotted) -> how the user spells it (a flag); others are shown as ``field 'x'``
    """
    parts = []
    for err in error.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"])
        shown = (names or {}).get(loc) or (names or {}).get(loc.rsplit(".", 1)[-1]) or (
            f"field {loc!r}" if loc else "(top level)")
        msg = err["msg"].removeprefix("Value error, ")
        msg = msg.replace("Input should be", "must be")
        if err["type"] not in ("value_error", "missing", "extra_forbidden") and "input" in err:
            got = repr(err["input"])
            msg += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{shown}: {msg}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
