"""An LLM as an E2CL agent: the three skills as chat prompts (the paper's prompt texts), through any
OpenAI-compatible provider (:func:`rewardlab.text2reward.providers.make_provider`), with corrections
retrieved from E2CL datasets as few-shot memory.

Retrieval: the ``k`` stored correction records whose (task, erroneous step, feedback) share the most
words with the current ones; they are shown as "erroneous step / feedback / corrective step" examples
in the correction prompt (the released code uses no retrieval: this is the issue's memory variant).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from rewardlab.e2cl.datasets import Context, Record, read_jsonl
from rewardlab.errors import UserError
from rewardlab.household.world import VERBS
from rewardlab.llm.base import LLMProvider, LLMRequest

_ACTIONS = "; ".join(v.template.format("<object>", "<object>") for v in VERBS)


def _history(ctx: Context) -> str:
    return "\n".join(f"step {i + 1}: {s} ({'executed' if ok else 'failed'})" for i, (s, ok) in enumerate(ctx.history)) or "(none)"


def _situation(ctx: Context) -> str:
    return f"Task: {ctx.task}\nSteps so far:\n{_history(ctx)}\nObservation: {ctx.observation}"


def _one_line(reply: str) -> str:
    """The reply's first non-empty line, without list markers, quotes or a trailing period."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^(step\s*\d*\s*[:.)-]|[-*\d.)\s])+", "", line.strip(), flags=re.I).strip().strip("`\"'")
        if line:
            return line.rstrip(".") if not line.lower().startswith("error") else line
    return ""


class CorrectionMemory:
    """Correction records to retrieve from.

    :param records: correction records (other skills are ignored)
    """

    def __init__(self, records: Sequence[Record]):
        self.records = [r for r in records if r.skill == "correction"]

    @classmethod
    def from_path(cls, path: Path) -> CorrectionMemory:
        """From a JSONL file, or every ``datasets/*.jsonl`` under a trial or run directory.

        :raises UserError: nothing readable there
        """
        files = [path] if path.is_file() else sorted(path.rglob("datasets/*.jsonl"))
        if not files:
            raise UserError(f"no E2CL datasets (datasets/*.jsonl) under {path}")
        return cls([r for f in files for r in read_jsonl(f)])

    def retrieve(self, ctx: Context, step: str, feedback: str, k: int) -> list[Record]:
        query = set(re.findall(r"[a-z]+", f"{ctx.task} {step} {feedback}".lower()))

        def score(r: Record) -> int:
            return len(query & set(re.findall(r"[a-z]+", f"{r.context.task} {r.step} {r.feedback}".lower())))

        return sorted(self.records, key=score, reverse=True)[:k]


class LLMAgent:
    """E2CL's three skills as prompts to a chat model (greedy: temperature 0).

    :param provider: an LLM provider (``make_provider("openai", ...)``)
    :param model: the model name sent with each request
    :param memory: corrections to retrieve few-shot examples from (None: zero-shot)
    :param k: examples per correction prompt
    """

    def __init__(self, provider: LLMProvider, model: str, memory: CorrectionMemory | None = None, k: int = 3):
        self.provider, self.model, self.memory, self.k = provider, model, memory, k

    def _ask(self, system: str, user: str, purpose: str) -> str:
        request = LLMRequest([{"role": "system", "content": system}, {"role": "user", "content": user}], self.model,
                             temperature=0.0, max_tokens=64, metadata={"purpose": f"e2cl-{purpose}"})
        return _one_line(self.provider.complete(request).texts[0])

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        system = (f"You are a robot agent in a household. Valid actions: {_ACTIONS}. "
                  "Reply with the next step only, in that form.")
        return [self._ask(system, f"{_situation(c)}\nNext step:", "plan") for c in contexts]

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        system = ("You are a world simulator. You need to generate the feedback according to plans. Reply 'True' "
                  "if the step can be executed now, else 'Error, <reason>'.")
        return [self._ask(system, f"{_situation(c)}\nStep: {s}\nFeedback:", "feedback")
                for c, s in zip(contexts, steps, strict=True)]

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        system = (f"You are a replanner for a household robot. Valid actions: {_ACTIONS}. "
                  "Reply with one corrective step only.")
        out = []
        for c, s, f in zip(contexts, steps, feedbacks, strict=True):
            shots = self.memory.retrieve(c, s, f, self.k) if self.memory is not None else []
            examples = "".join(f"Example: erroneous step: {r.step}; feedback: {r.feedback}; corrective step: {r.target}\n"
                               for r in shots)
            out.append(self._ask(system, f"{examples}{_situation(c)}\nErroneous step: {s}\nFeedback: {f}\n"
                                 "A corrective step would be:", "correct"))
        return out
