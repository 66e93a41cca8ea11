"""Agents with E2CL's three skills behind one interface: plan the next step, predict the env's feedback
for a candidate step, propose a correction (§6 of ``shared/research/reward_design_algorithms.md``).

:class:`SeqAgent` is the small sequence model trained from scratch (:mod:`rewardlab.e2cl.model`);
:class:`rewardlab.e2cl.llm.LLMAgent` is a prompted LLM with retrieved corrections. Both take batches,
so evaluation steps many episodes in lockstep.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from rewardlab.e2cl.datasets import Context, Record
from rewardlab.e2cl.model import ModelConfig, Seq2Seq, pad_batch
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.errors import UserError

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


def prompt(skill: str, context: Context, step: str = "", feedback: str = "") -> str:
    """A skill's prompt as one token string: the skill marker, task, observation, recent history, then
    the candidate step (feedback, correction) and its feedback (correction). E2CL's released correction
    prompt omits the feedback; the paper's figure conditions on it, as here."""
    history = " ".join(f"{s} {'<ok>' if ok else '<failed>'}" for s, ok in context.history[-HISTORY:])
    text = f"{_MARKER[skill]} <task> {context.task} <obs> {context.observation} <history> {history}"
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

    def _run(self, prompts: Sequence[str], max_len: int, temperature: float = 0.0) -> list[str]:
        if not prompts:
            return []
        self.model.eval()
        out: list[str] = []
        for i in range(0, len(prompts), CHUNK):  # bounded memory for large batches (teacher-guided exploration)
            src = pad_batch([self.tok.encode(p) for p in prompts[i:i + CHUNK]], self.tok.pad,
                            keep_last=self.model.config.max_src)
            out += [self.tok.decode(s) for s in self.model.generate(src, max_len, temperature, self.generator)]
        return out

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        return self._run([prompt("plan", c) for c in contexts], 8, self.temperature)

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        return self._run([prompt("feedback", c, s) for c, s in zip(contexts, steps, strict=True)], 30)

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        return self._run([prompt("correction", c, s, f) for c, s, f in zip(contexts, steps, feedbacks, strict=True)], 8)

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
