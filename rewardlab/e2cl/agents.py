"""Agents with E2CL's three skills behind one interface: plan the next step, predict the env's feedback
for a candidate step, propose a correction (§6 of ``shared/research/reward_design_algorithms.md``).

:class:`SeqAgent` is the small sequence model trained from scratch (:mod:`rewardlab.e2cl.model`);
:class:`rewardlab.e2cl.llm.LLMAgent` is a prompted LLM with retrieved corrections. Both take batches,
so evaluation steps many episodes in lockstep.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from rewardlab.e2cl.datasets import Context, Record
from rewardlab.e2cl.model import ModelConfig, Seq2Seq, pad_batch
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.errors import UserError
from rewardlab.household.world import ENTITIES, ROOMS

#: Steps of history in a prompt (E2CL's prompt holds the whole history; a deviation for a small model).
HISTORY = 6
#: Prompts decoded together at most.
CHUNK = 256


class Agent(Protocol):
    """The three E2CL skills, batched (lists in, lists out, same order)."""

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        """The next step for each context."""

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        """Predicted env feedback for each candidate step: ``True`` or ``Error, <reason>``."""

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        """A corrective step for each erroneous step, given its (predicted or real) feedback."""


def is_error(feedback: str) -> bool:
    """Whether a feedback text reports an error (the paper's test: it contains "Error")."""
    return "error" in feedback.lower()


_MARKER = {"plan": "<plan>", "feedback": "<feedback>", "correction": "<correct>"}
_ENTITY_SET = frozenset(ENTITIES)
_SEE = re.compile(r"You see (.*?)\.(?= You know|$)")
_ITEM = re.compile(r"([a-z]+)(?: \(([^)]*)\))?")


def focus(task: str, observation: str) -> str:
    """The observation cut to what the task concerns: the "You see" list keeps only objects the task
    names, objects the env says the agent should know the room of (the task's tools), what the agent
    holds or is close to, and the furniture those are in or on; every other sentence is kept whole.

    Deviation (labelled): E2CL's prompt carries VirtualHome's whole partial observation. A model trained
    from scratch on a few hundred demonstrations learns the task -> object mapping far better from the
    focused view (experiments/results/e2cl-household/README.md, "What changed", measures it).
    It uses only the text the agent is given, so it is the agent's preprocessing, not extra env information.
    """
    match = _SEE.search(observation)
    if match is None:
        return observation
    named = {w for w in re.findall(r"[a-z]+", f"{task} {observation[:match.start()]} {observation[match.end():]}".lower())
             if w in _ENTITY_SET}
    items = [(m.group(1), m.group(2)) for m in _ITEM.finditer(match.group(1)) if m.group(1) in _ENTITY_SET]
    for name, state in items:  # the furniture a wanted object is in or on is wanted too
        if name in named and state:
            named |= {w for w in re.findall(r"[a-z]+", state) if w in _ENTITY_SET}
    kept = [f"{n} ({st})" if st else n for n, st in items if n in named]
    return f"{observation[:match.start()]}You see {', '.join(kept) or 'nothing'}.{observation[match.end():]}"


def prompt(skill: str, context: Context, step: str = "", feedback: str = "") -> str:
    """A skill's prompt as one token string: the skill marker, task, observation, recent history, then
    the candidate step (feedback, correction) and its feedback (correction). E2CL's released correction
    prompt omits the feedback; the paper's figure conditions on it, as here."""
    history = " ".join(f"{s} {'<ok>' if ok else '<failed>'}" for s, ok in context.history[-HISTORY:])
    text = f"{_MARKER[skill]} <task> {context.task} <obs> {focus(context.task, context.observation)} <history> {history}"
    if skill in ("feedback", "correction"):
        text += f" <step> {step}"
    if skill == "correction":
        text += f" <fb> {feedback}"
    return text


def record_prompt(r: Record) -> str:
    return prompt(r.skill, r.context, r.step, r.feedback)


class SeqAgent:
    """The trained sequence model as an :class:`Agent`.

    :param model: the encoder-decoder
    :param tokenizer: the household tokenizer
    :param temperature: 0 for greedy steps (evaluation); > 0 samples steps (exploration)
    :param seed: seed of the sampling generator
    """

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, temperature: float = 0.0, seed: int = 0):
        self.model, self.tok, self.temperature = model, tokenizer, temperature
        self.generator = torch.Generator().manual_seed(seed)

    def _run(self, prompts: Sequence[str], max_len: int, temperature: float = 0.0, constrain: bool = False,
             avoid: Sequence[str] | None = None) -> list[str]:
        if not prompts:
            return []
        self.model.eval()
        out: list[str] = []
        for i in range(0, len(prompts), CHUNK):  # bounded memory for large batches (teacher-guided exploration)
            ids = [self.tok.encode(p) for p in prompts[i:i + CHUNK]]
            src = pad_batch(ids, self.tok.pad, keep_last=self.model.config.max_src)
            allowed = self._grounded(ids) if constrain else None
            banned = [self.tok.encode(a) for a in avoid[i:i + CHUNK]] if avoid is not None else None
            out += [self.tok.decode(s) for s in self.model.generate(src, max_len, temperature, self.generator, allowed,
                                                                     banned)]
        return out

    def _grounded(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Per prompt, the tokens a step may use: every non-entity token, the rooms, and the entities the
        prompt mentions (B, V) — a step can only name what the agent was told about.

        Deviation (labelled): the paper decodes freely and relies on the feedback model to catch
        hallucinated objects; grounding the arguments in the prompt is a standard constraint of
        language planners (Huang et al. 2022 map steps to admissible actions)."""
        entities = {self.tok.index[e] for e in ENTITIES if e in self.tok.index}
        base = torch.ones(len(self.tok), dtype=torch.bool)
        base[sorted(entities)] = False
        base[[self.tok.index[r] for r in ROOMS]] = True
        allowed = base.repeat(len(prompts), 1)
        for row, ids in enumerate(prompts):
            allowed[row, sorted(entities.intersection(ids))] = True
        return allowed

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        # no step twice in a row: the world is deterministic, so a repeated step either fails as before
        # or does nothing (walk to where it stands, grab what it holds, open what is open); greedy
        # decoding of a small model otherwise loops on one step until the episode ends (labelled deviation)
        last = [c.history[-1][0] if c.history else "" for c in contexts]
        return self._run([prompt("plan", c) for c in contexts], 8, self.temperature, constrain=True, avoid=last)

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        return self._run([prompt("feedback", c, s) for c, s in zip(contexts, steps, strict=True)], 30)

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        # a correction is a different step: the erroneous step itself is excluded from decoding (a small
        # model otherwise echoes it: 157 of 230 corrections in the first CPU run, eval_log of seed 0)
        return self._run([prompt("correction", c, s, f) for c, s, f in zip(contexts, steps, feedbacks, strict=True)], 8,
                         constrain=True, avoid=steps)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The weights, the model sizes and the vocabulary in one file (``torch.load`` with ``weights_only``)."""
        torch.save({"state": self.model.state_dict(), "config": vars(self.model.config), "tokens": self.tok.tokens}, path)

    @classmethod
    def load(cls, path: Path, temperature: float = 0.0) -> SeqAgent:
        """A saved agent (a trial's ``model.pt``).

        :raises UserError: the file is missing or not a saved E2CL agent
        """
        try:
            data: dict[str, Any] = torch.load(path, weights_only=True)
            tok = Tokenizer.from_tokens(data["tokens"])
            model = Seq2Seq(len(tok), tok.pad, tok.bos, tok.eos, ModelConfig(**data["config"]))
            model.load_state_dict(data["state"])
        except FileNotFoundError:
            raise UserError(f"no E2CL agent at {path}") from None
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise UserError(f"{path} is not a saved E2CL agent ({type(e).__name__})") from None
        return cls(model, tok, temperature)
