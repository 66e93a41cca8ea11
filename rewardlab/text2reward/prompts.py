"""Prompts for every LLM call of the generation loop, rendered from ``prompts/*.j2`` (jinja2).

The initial prompt follows Text2Reward: an expert role, the environment as Pythonic class stubs
(:func:`rewardlab.cards.render_stubs`), the instruction, the action space, background knowledge, and
for few-shot the retrieved hand-written rewards ("Task: … Reward function: ```python …```"). The
training reflection follows Eureka: per-component statistics at checkpoints, success rate, episode
lengths, then rewrite heuristics. Human feedback follows Text2Reward: previous code, observed
behaviour, the feedback, "re-imagine which steps are missed or wrong".

Every builder returns chat messages ``[{"role": ..., "content": ...}]``. Feedback prompts are a
conversation, as in Eureka: the system role, the initial prompt (so the class stubs stay in view),
the previous program as the assistant's reply, then the feedback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from rewardlab.arrays import ALLOWED_NAMES
from rewardlab.cards import DiscreteSpace, EnvCard, MultiDiscreteSpace, render_stubs
from rewardlab.resources import resource_dir
from rewardlab.text2reward.retrieval import Example
from rewardlab.types import TrialResult

Messages = list[dict[str, str]]

#: Background knowledge in every initial prompt, whatever the task (Text2Reward's "additional knowledge",
#: for arrays). Advice that fits only some tasks is chosen by :func:`background_tips`.
BACKGROUND_TIPS: tuple[str, ...] = (
    "Distances: np.linalg.norm(a - b, axis=-1). A bounded shaping term 1 - np.tanh(d / scale), with scale "
    "about the size of the motion, gives a gradient everywhere and cannot dominate.",
    "A small action penalty (-w * np.sum(action ** 2, axis=-1), w small next to the task terms) smooths "
    "the motion; a large one teaches the agent to stand still.",
    "Keep the total within a few tens per step; the critic learns best when rewards are of order 1.",
)

#: For tasks made of stages (reach, grasp or push, move, hold): the manipulation families.
STAGE_TIP = ("Stage the reward: a term per stage of the task (e.g. reach, grasp or push, move, hold), each "
             "paid in full only once the previous stage is achieved (multiply by, or np.where on, the earlier "
             "stage's progress).")
#: For tasks whose success criterion a state can meet (``info.KEY`` or ``FIELD < N``).
SUCCESS_TIP = ("Give the state that meets the success criterion the highest reward: a success term that is full "
               "when the criterion holds keeps the agent at the goal instead of circling it.")
#: For tasks without a success criterion (judged by the behaviour and the return).
NO_SUCCESS_TIP = ("This task has no success criterion, so there is no success state to pay a bonus for: reward "
                  "the behaviour the instruction asks for at every step.")

#: Simulator families whose tasks move objects in stages; the system text and tips say "reach, grasp".
MANIPULATION_FAMILIES = frozenset({"metaworld", "maniskill"})
#: Families of locomotion and balance tasks: no objects, no stages.
CONTROL_FAMILIES = frozenset({"mujoco"})

#: Extra background per simulator family; every tip holds for every card of the family.
FAMILY_TIPS: dict[str, tuple[str, ...]] = {
    "metaworld": (
        "MetaWorld episodes do not end on success; the agent keeps acting for the whole episode, so the "
        "reward must stay highest while the task stays done.",
        "The hand moves by small displacements each step; rewarding progress towards the next target in "
        "each stage works better than rewarding the final goal alone.",
    ),
    "mujoco": (
        "Some of these tasks end the episode early when the body leaves a healthy range (the tips above say "
        "whether this one does, and when). Where they do, a reward that is negative on most steps teaches "
        "the agent to end episodes early; one that is positive while the episode runs teaches it to stay "
        "in range.",
    ),
    "maniskill": (
        "ManiSkill tasks are staged: reach, grasp, place, then stay static at the goal.",
    ),
}


def task_kind(card: EnvCard) -> str:
    """How the prompts speak of the card's task: ``manipulation`` (stages: reach, grasp or push, move),
    ``control`` (locomotion and balance: a behaviour paid every step) or ``generic`` (any other family)."""
    if card.family in MANIPULATION_FAMILIES:
        return "manipulation"
    if card.family in CONTROL_FAMILIES:
        return "control"
    return "generic"


def background_tips(card: EnvCard) -> list[str]:
    """The background knowledge for the card's initial prompt: :data:`BACKGROUND_TIPS`, the stage tip for
    manipulation, the success tip that fits its success rule (none for ``survived``, whose criterion the
    prompt states), then the family's tips."""
    tips = list(BACKGROUND_TIPS)
    if task_kind(card) == "manipulation":
        tips.insert(0, STAGE_TIP)
    rule = card.success_rule
    if rule is None:
        tips.append(NO_SUCCESS_TIP)
    elif rule.kind in ("info", "threshold"):
        tips.append(SUCCESS_TIP)
    return tips + list(FAMILY_TIPS.get(card.family, ()))


def describe_success(card: EnvCard) -> str:
    """The card's success criterion in words (:meth:`~rewardlab.cards.SuccessRule.describe`)."""
    rule = card.success_rule
    if rule is None:
        return "none is defined; the task is judged by the behaviour the instruction describes."
    return rule.describe()


def describe_action_space(card: EnvCard) -> str:
    """The action space in a sentence, bounds as one number when every dimension shares it."""
    space = card.action
    if isinstance(space, DiscreteSpace):
        return f"a Discrete space: one integer per env in [{space.start}, {space.start + space.n - 1}]."
    if isinstance(space, MultiDiscreteSpace):
        return (f"a MultiDiscrete space of shape ({len(space.nvec)},): entry i an integer in [0, nvec[i] - 1], "
                f"nvec = {space.nvec}.")

    def text(bound: float | list[float]) -> str:
        if isinstance(bound, (int, float)):
            return f"{bound:g}"
        if len(set(bound)) == 1:
            return f"{bound[0]:g}"
        return "[" + ", ".join(f"{b:g}" for b in bound) + "] (per dimension)"

    shape = ", ".join(map(str, space.shape))
    return f"a continuous Box of shape ({shape},), each entry in [{text(space.low)}, {text(space.high)}]."


def describe_action(card: EnvCard) -> str:
    """The action as a prompt states it, once: its array shape in the program, its space and its meaning
    (``np.ndarray of shape (B, 4), one row per environment: a continuous Box ... Meaning: dx, dy, ...``)."""
    space = card.action
    batch = "(B,)" if not space.shape else "(B, " + ", ".join(map(str, space.shape)) + ")"
    doc = space.doc.strip()
    return f"np.ndarray of shape {batch}, one row per environment: {describe_action_space(card)}" + (
        f" Meaning: {doc}{'' if doc.endswith('.') else '.'}" if doc else "")


# -- training statistics for the reflection prompt -------------------------------------------------
@dataclass
class TrainingStats:
    """What a short training run with a candidate reward showed, at checkpoints (Eureka's feedback).

    Every series has one value per checkpoint (``steps``); series may be ``None`` when not measured.

    :param steps: environment steps of the checkpoints
    :param components: per reward component, its mean per-episode sum at each checkpoint
    :param success: success rate at each checkpoint (fraction of evaluation episodes)
    :param episode_length: mean episode length at each checkpoint
    :param return_env: mean episode return under the env's own reward
    :param return_program: mean episode return under the candidate reward
    :param algo: the RL algorithm (for the text)
    :param total_steps: the training budget (for the text)
    :param max_points: at most this many checkpoints are shown (evenly subsampled; Eureka shows 10)
    """

    steps: list[int] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)
    success: list[float] | None = None
    episode_length: list[float] | None = None
    return_env: list[float] | None = None
    return_program: list[float] | None = None
    algo: str | None = None
    total_steps: int | None = None
    max_points: int = 10

    @classmethod
    def from_trial(cls, result: TrialResult, algo: str | None = None) -> TrainingStats:
        """Build from a probe's :class:`~rewardlab.types.TrialResult`: its curve (success, returns and
        the per-component sums at each evaluation); the episode length comes from the final
        evaluation, repeated only at the last checkpoint."""
        curve = result.curve

        def series(key: str) -> list[float] | None:
            values = [getattr(p, key) for p in curve]
            return None if not values or any(v is None for v in values) else [float(v) for v in values]

        names = sorted({k for p in curve for k in p.components})
        lengths = result.eval.length
        return cls(
            steps=[p.step for p in curve],
            components={k: [float(p.components.get(k, float("nan"))) for p in curve] for k in names},
            success=series("success"),
            episode_length=[sum(lengths) / len(lengths)] if lengths else None,
            return_env=series("return_env"),
            return_program=series("return_program"),
            algo=algo or result.algo or None,
            total_steps=result.steps,
        )

    def _pick(self, values: Sequence[float]) -> list[float]:
        if len(values) <= self.max_points:
            return list(values)
        idx = sorted({round(i * (len(values) - 1) / (self.max_points - 1)) for i in range(self.max_points)})
        return [values[i] for i in idx]

    def _row(self, name: str, values: Sequence[float]) -> dict[str, Any]:
        finite = [v for v in values if math.isfinite(v)] or [float("nan")]
        return {"name": name, "label": name, "series": [_num(v) for v in self._pick(values)],
                "mean": _num(sum(finite) / len(finite)), "min": _num(min(finite)), "max": _num(max(finite))}

    def component_rows(self) -> list[dict[str, Any]]:
        return [self._row(name, v) for name, v in self.components.items() if v]

    def task_rows(self) -> list[dict[str, Any]]:
        rows = []
        for label, values in (("success rate", self.success), ("episode length", self.episode_length),
                              ("env return (the environment's own reward)", self.return_env),
                              ("return under your reward", self.return_program)):
            if values:
                row = self._row(label, values)
                rows.append(row)
        return rows

    def notes(self) -> list[str]:
        """Diagnostics that Eureka leaves to the LLM, computed here: zero success, flat and dominant
        components, reward that grows while the task does not."""
        notes = []
        if self.success and max(self.success) < 0.05:
            notes.append(f"The success rate stayed near zero (at most {_num(max(self.success))}).")
        means = {k: abs(sum(v) / len(v)) for k, v in self.components.items() if v}
        for name, values in self.components.items():
            if len(values) >= 3:
                spread = max(values) - min(values)
                scale = max(abs(v) for v in values)
                if scale > 0 and spread <= 0.05 * scale:
                    notes.append(f"Component '{name}' hardly changed over training (range {_num(spread)} "
                                 f"around {_num(sum(values) / len(values))}).")
        if len(means) >= 2:
            for name, m in means.items():
                others = sorted(v for k, v in means.items() if k != name)
                median = others[len(others) // 2]
                if median > 0 and m > 10 * median:
                    notes.append(f"Component '{name}' is about {m / median:.0f} times larger in magnitude "
                                 "than the others.")
        if self.return_program and len(self.return_program) >= 2:
            grew = self.return_program[-1] - self.return_program[0]
            span = max(abs(v) for v in self.return_program) or 1.0
            flat_success = not self.success or max(self.success) - min(self.success) < 0.05
            flat_env = not self.return_env or len(self.return_env) < 2 or (
                self.return_env[-1] - self.return_env[0] <= 0.05 * (max(abs(v) for v in self.return_env) or 1.0))
            if grew > 0.2 * span and flat_success and flat_env:
                notes.append("Your reward grew during training while the success rate and the env return "
                             "did not: the policy may be collecting reward without doing the task.")
        return notes

    def context(self) -> dict[str, Any]:
        return {"steps": self._pick(self.steps), "component_rows": self.component_rows(),
                "task_rows": self.task_rows(), "notes": self.notes(), "algo": self.algo,
                "total_steps": self.total_steps}


def _num(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


# -- the builder -----------------------------------------------------------------------------------
class PromptBuilder:
    """Renders the prompts of the generation loop from ``prompts/*.j2``.

    :param prompts_dir: the templates folder (default: the shipped ``prompts/``, resolved by
        :func:`rewardlab.resources.resource_dir`)
    :param background: background tips for initial prompts (default: :func:`background_tips`, which fits
        them to the card's family and success rule)
    """

    def __init__(self, prompts_dir: Path | str | None = None, background: Sequence[str] | None = None):
        self.prompts_dir = Path(prompts_dir) if prompts_dir is not None else resource_dir("prompts")
        self.background = None if background is None else list(background)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.prompts_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def render(self, template: str, **context: Any) -> str:
        """Render one template (``system.j2``, ...) with the given variables, stripped."""
        return self.env.get_template(template).render(**context).strip()

    def system(self, card: EnvCard | None = None) -> str:
        """The system role: a reward engineer writing batched numpy over the state view."""
        return self.render("system.j2", card=card, allowed_names=ALLOWED_NAMES,
                           kind=task_kind(card) if card is not None else "generic")

    def initial_prompt(self, card: EnvCard, instruction: str | None = None,
                       examples: Sequence[Example] = ()) -> str:
        """The user message of the initial prompt (zero-shot without examples, few-shot with them)."""
        background = self.background if self.background is not None else background_tips(card)
        return self.render(
            "few_shot.j2" if examples else "zero_shot.j2",
            card=card,
            kind=task_kind(card),
            instruction=(instruction or card.instruction).strip(),
            stubs=render_stubs(card, action=False),  # the action is stated once, below the stubs
            action_space=describe_action(card),
            success=describe_success(card),
            background=background,
            examples=list(examples),
        )

    def initial(self, card: EnvCard, instruction: str | None = None,
                examples: Sequence[Example] = ()) -> Messages:
        """System role + the initial prompt.

        :param card: the target task
        :param instruction: the task in words (default: the card's instruction)
        :param examples: few-shot examples (:func:`rewardlab.text2reward.retrieval.retrieve_examples`);
            none gives the zero-shot prompt
        """
        return [{"role": "system", "content": self.system(card)},
                {"role": "user", "content": self.initial_prompt(card, instruction, examples)}]

    def _conversation(self, card: EnvCard, code: str, feedback: str, instruction: str | None,
                      examples: Sequence[Example]) -> Messages:
        return self.initial(card, instruction, examples) + [
            {"role": "assistant", "content": f"```python\n{code.strip()}\n```"},
            {"role": "user", "content": feedback},
        ]

    def execution_error(self, card: EnvCard, code: str, error: Any, corrections: Sequence[Any] = (),
                        instruction: str | None = None, examples: Sequence[Example] = ()) -> Messages:
        """Feedback for a program that failed a check (static policy, sandbox trial, run time).

        :param code: the failing program
        :param error: a :class:`~rewardlab.errors.RewardProgramError`, a
            :class:`~rewardlab.sandbox.TrialReport`, any exception, or the message as text; its rule and
            line are shown with the offending source line
        :param corrections: correction-memory examples, each a mapping or object with ``failing_code``,
            ``feedback`` and ``fixed_code``
        :param instruction: as in :meth:`initial`
        :param examples: as in :meth:`initial` (the few-shot examples of the original prompt)
        """
        message, line = describe_error(error)
        lines = code.split("\n")
        line_text = lines[line - 1].strip() if line and 0 < line <= len(lines) else ""
        text = self.render(
            "execution_error.j2", card=card, code=code, error=message,
            error_line=line if line_text else None, error_line_text=line_text,
            corrections=[_correction(c) for c in corrections],
        )
        return self._conversation(card, code, text, instruction, examples)

    def reflection(self, card: EnvCard, code: str, stats: TrainingStats | Mapping[str, Any],
                   instruction: str | None = None, examples: Sequence[Example] = ()) -> Messages:
        """Eureka-style reflection on a training run with the program.

        :param stats: a :class:`TrainingStats`, or a mapping of its fields
        """
        if not isinstance(stats, TrainingStats):
            stats = TrainingStats(**dict(stats))
        text = self.render("reflection.j2", card=card, kind=task_kind(card), code=code, stats=stats.context())
        return self._conversation(card, code, text, instruction, examples)

    def human_feedback(self, card: EnvCard, code: str, feedback: str, observed: str | None = None,
                       instruction: str | None = None, examples: Sequence[Example] = ()) -> Messages:
        """Text2Reward-style human feedback on the behaviour the program trained.

        :param feedback: what the person wants changed ("the gripper closes too early")
        :param observed: what the policy was seen doing, if described
        """
        if not feedback or not feedback.strip():
            raise ValueError("human feedback is empty")
        text = self.render("human_feedback.j2", card=card, code=code, feedback=feedback.strip(),
                           observed=(observed or "").strip() or None)
        return self._conversation(card, code, text, instruction, examples)


def describe_error(error: Any) -> tuple[str, int | None]:
    """A failed check as one line ``[rule] (line N): message`` and its line number."""
    if isinstance(error, str):
        return error.strip().splitlines()[0] if error.strip() else "unknown error", None
    rule = getattr(error, "rule", "") or ""
    message = getattr(error, "message", "") or ""
    line = getattr(error, "line", None)
    if not message:
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        if isinstance(error, Exception) and not rule:
            return f"{type(error).__name__}: {message}" if type(error).__name__ not in message else message, line
    where = f" (line {line})" if line else ""
    return (f"[{rule}]{where}: {message}" if rule else f"{message}{where}"), line


def _correction(c: Any) -> dict[str, str]:
    get = c.get if isinstance(c, Mapping) else (lambda k: getattr(c, k))
    return {"failing_code": str(get("failing_code")), "feedback": str(get("feedback")),
            "fixed_code": str(get("fixed_code"))}


__all__ = ["PromptBuilder", "TrainingStats", "BACKGROUND_TIPS", "FAMILY_TIPS", "STAGE_TIP", "SUCCESS_TIP",
           "NO_SUCCESS_TIP", "background_tips", "task_kind", "describe_action", "describe_action_space",
           "describe_success", "describe_error", "Messages"]
