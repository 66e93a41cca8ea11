"""Correction memory: E2CL's feedback-and-correction data, applied to reward code.

E2CL (Wang et al., Findings of EMNLP 2024, arXiv:2409.03256) teaches an agent to correct itself from
(erroneous step, environment feedback, corrective step) records gathered two ways. Here the "step" is a
reward program, the "environment feedback" is the one-line rejection of :func:`rewardlab.checks.check_program`
(static policy, sandbox trial), and the records are used in context rather than for fine-tuning: the
error-feedback prompt of the generation loop shows the most relevant stored corrections.

- **Teacher-free exploration** (the agent's own mistakes): every fix the LLM made during generation that
  later passed is recorded by the loop, :meth:`CorrectionMemory.record` with ``origin="generation"``.
- **Teacher-guided exploration** (mistakes next to an expert): :func:`seed_teacher_pairs` perturbs each
  hand-written reference reward with mistakes LLMs really make (an attribute the card lacks, ``import
  torch``, a tuple of three, an unguarded division, ``np.save``, a dunder, a missing ``return``, ...),
  runs the checks on each mutant, and stores (mutant, the feedback the checks gave, the reference) for
  the mutants the checks reject. The reference is the "expert-based correction".
- E2CL keeps an LLM correction only when it passes a feedback check (its "corrective filter"); here a
  pair is stored only when its fixed code passes :func:`~rewardlab.checks.check_program` for the card.

Retrieval (:meth:`CorrectionMemory.retrieve`) ranks pairs by the same simulator family, then the same
rule (``import``, ``output``, ``runtime``, ``non-finite``, ...), then ``generation`` before ``teacher``,
then recency. Teacher pairs of the target card are never retrieved: their fix *is* the card's
hand-written reference, which few-shot retrieval also leaves out.

:func:`first_attempt_stats` is what a generation run reports: how often a first attempt fails, how many
failures get fixed, and in how many attempts.
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from rewardlab.cards import EnvCard, list_cards, split_card_id
from rewardlab.checks import check_program
from rewardlab.errors import RewardProgramError, one_line
from rewardlab.store import CandidateRecord, RunStore
from rewardlab.text2reward.retrieval import strip_module_docstring
from rewardlab.trial import TrialReport

ORIGINS = ("generation", "teacher")
"""Where a pair comes from: a fix the LLM made that passed, or a perturbed reference reward."""

MAX_EXAMPLE_LINES = 60
"""Code in a retrieved example is cut to this many lines (prompts stay short)."""

_RULE_IN_TEXT = re.compile(r"\[([A-Za-z][\w-]*)\]")


# -- errors as rules and one-line feedback ---------------------------------------------------------
def error_rule(error: Any) -> str | None:
    """The rule a failed check broke: from a :class:`RewardProgramError` or a
    :class:`~rewardlab.sandbox.TrialReport` (``.rule``), a code-extraction error (``extraction``), or
    text carrying ``[rule]`` (``"reward program rejected [import] (line 2): ..."``); ``None`` if none."""
    if error is None:
        return None
    if isinstance(error, TrialReport) and error.ok:
        return None
    rule = getattr(error, "rule", None)
    if isinstance(rule, str) and rule:
        return rule
    from rewardlab.text2reward.extract import CodeExtractionError

    if isinstance(error, CodeExtractionError):
        return "extraction"
    match = _RULE_IN_TEXT.search(str(error))
    return match.group(1) if match else None


def feedback_line(error: Any) -> str:
    """A failed check as the one line the generation loop feeds back
    (``reward program rejected [rule] (line N): message``)."""
    if isinstance(error, TrialReport):
        error = RewardProgramError(error.rule, error.message, error.line)
    text = str(error).strip()
    return one_line(text.splitlines()[0] if text else type(error).__name__, limit=500)


def _words(error: Any) -> frozenset[str]:
    """The words of an error's message, without the ``reward program rejected [rule] (line N):`` prefix."""
    if error is None:
        return frozenset()
    text = feedback_line(error).split("]", 1)[-1]
    return frozenset(w for w in re.findall(r"[a-z_][a-z0-9_]+", text.lower()) if w not in ("line", "the", "is", "not"))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def shorten(code: str, max_lines: int = MAX_EXAMPLE_LINES) -> str:
    """``code`` cut to ``max_lines`` lines, with a comment saying how many were left out."""
    lines = code.strip("\n").split("\n")
    if len(lines) <= max_lines:
        return code
    return "\n".join(lines[:max_lines] + [f"# ... ({len(lines) - max_lines} more lines)"])


# -- the memory ------------------------------------------------------------------------------------
class CorrectionMemory:
    """(failing code, feedback, fixed code) pairs in the run store, retrieved into error prompts.

    :param store: the run store (its ``corrections`` table holds the pairs, across runs)
    :param max_lines: code in retrieved examples is cut to this many lines
    :param upto: retrieve only pairs with an id up to this one (a generation run fixes its memory to what
        existed when it started, so its prompts, and a replay or resume of it, never depend on fixes
        stored later, by its own samples or by other runs); ``None``: every pair
    """

    def __init__(self, store: RunStore, max_lines: int = MAX_EXAMPLE_LINES, upto: int | None = None):
        self.store = store
        self.max_lines = max_lines
        self.upto = upto

    def snapshot(self) -> int:
        """The newest pair's id (0 when there is none): what :attr:`upto` fixes a run's memory to."""
        return max((r.id for r in self.store.corrections()), default=0)

    def record(self, card: EnvCard, failing_code: str, feedback: Any, fixed_code: str,
               origin: str = "generation", rule: str | None = None) -> int | None:
        """Store a pair after verifying the fix; return its id, or ``None`` when it was refused.

        The fix is checked with :func:`~rewardlab.checks.check_program` for ``card`` (a sandbox trial,
        about a quarter second): a fix that does not pass is never stored. Storing the same pair twice
        keeps one row.

        :param card: the task both programs were written for
        :param failing_code: the program (or reply) that was rejected
        :param feedback: its rejection: a :class:`RewardProgramError`, a ``TrialReport`` or the text
        :param fixed_code: the program that replaced it
        :param origin: ``generation`` (an LLM's fix) or ``teacher`` (a perturbed reference reward)
        :param rule: the broken rule (default: parsed from ``feedback``; ``unknown`` if it has none)
        """
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
        if not fixed_code or not fixed_code.strip() or failing_code.strip() == fixed_code.strip():
            return None
        if not check_program(fixed_code, card).ok:
            return None
        pair_id, _ = self.store.add_correction(
            card.family, card.id, rule or error_rule(feedback) or "unknown", failing_code,
            feedback_line(feedback), fixed_code, origin)  # type: ignore[arg-type]
        return pair_id

    def retrieve(self, card: EnvCard, error: Any = None, k: int = 2,
                 leave_one_out: bool = True) -> list[dict[str, str]]:
        """The ``k`` stored corrections most relevant to a failure of a program for ``card``.

        Ranked by: the same family as ``card``, then the same rule as ``error``, then ``generation``
        before ``teacher``, then the feedback closest in words to the error's (Jaccard over words: an
        ``AttributeError`` on a missing field before one on ``np.random``, both rule ``runtime``), then
        newest first. Pairs sharing neither the family nor the rule are left out (they teach little
        and cost tokens), and within its family-and-rule rank a teacher pair goes after the others when
        one of the same card and rule ranks above it (two examples are rarely the same reference
        broken the same way twice).

        :param card: the task of the failing program
        :param error: its rejection (``RewardProgramError``, ``TrialReport``, exception or text with
            ``[rule]``); ``None`` ranks by family alone
        :param k: at most this many examples
        :param leave_one_out: never return teacher pairs of ``card`` itself (their fix is its reference)
        :return: dicts with ``failing_code``, ``feedback`` and ``fixed_code`` (code cut to
            ``max_lines`` lines), best first
        """
        if k <= 0:
            return []
        rule = error_rule(error)
        rows = [r for r in self.store.corrections()
                if (self.upto is None or r.id <= self.upto)
                and not (leave_one_out and r.origin == "teacher" and r.card_id == card.id)
                and (r.family == card.family or (rule is not None and r.rule == rule))]
        words = _words(error)
        rows.sort(key=lambda r: (r.created, r.id), reverse=True)  # newest first ...
        rows.sort(key=lambda r: (r.family != card.family, r.rule != rule, r.origin != "generation",
                                 -_overlap(words, _words(r.feedback))))
        seen: set[tuple[str, str]] = set()
        repeat = {}
        for r in rows:  # a teacher pair of a card and rule already ranked waits (same rank class)
            key = (r.card_id, r.rule)
            repeat[r.id] = r.origin == "teacher" and key in seen
            seen.add(key)
        rows.sort(key=lambda r: (r.family != card.family, r.rule != rule, repeat[r.id]))
        chosen = rows[:k]
        return [{"failing_code": shorten(r.failing_code, self.max_lines), "feedback": r.feedback,
                 "fixed_code": shorten(r.fixed_code, self.max_lines)} for r in chosen]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """How many pairs are stored: ``{origin: {family: {rule: n}}}``."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.store.corrections():
            fam = out.setdefault(r.origin, {}).setdefault(r.family, {})
            fam[r.rule] = fam.get(r.rule, 0) + 1
        return out


# -- teacher-guided pairs: perturbed reference rewards ---------------------------------------------
class _Program:
    """A reference reward's source with the positions of what the mutations edit."""

    def __init__(self, source: str, card: EnvCard):
        self.source = source
        self.card = card
        self.lines = source.split("\n")
        tree = ast.parse(source)
        self.imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        self.fn = next((s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "compute_dense_reward"),
                       None)
        body = self.fn.body if self.fn is not None else []
        self.ret = body[-1] if body and isinstance(body[-1], ast.Return) and body[-1].value is not None else None
        self.assigns = [s for s in body if isinstance(s, ast.Assign) and len(s.targets) == 1
                        and isinstance(s.targets[0], ast.Name)]
        self.indent = " " * body[0].col_offset if body else "    "

    # positions -> text offsets (ast columns count UTF-8 bytes)
    def offset(self, lineno: int, col: int) -> int:
        before = sum(len(line) + 1 for line in self.lines[: lineno - 1])
        return before + len(self.lines[lineno - 1].encode()[:col].decode(errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end]

    def replace(self, start: int, end: int, text: str) -> str:
        return self.source[:start] + text + self.source[end:]

    def insert_lines(self, before_line: int, new_lines: Sequence[str]) -> str:
        """The source with ``new_lines`` inserted before 1-based line ``before_line``."""
        lines = self.lines[: before_line - 1] + list(new_lines) + self.lines[before_line - 1:]
        return "\n".join(lines)

    # what the return statement returns
    def total_and_components(self) -> tuple[ast.expr, ast.expr | None] | None:
        if self.ret is None:
            return None
        value = self.ret.value
        if isinstance(value, ast.Tuple) and len(value.elts) == 2:
            return value.elts[0], value.elts[1]
        return value, None  # type: ignore[return-value]

    def with_total(self, new_total: Callable[[str], str]) -> tuple[int, int, str] | None:
        """(start, end, replacement) that rewrites the returned total's text."""
        parts = self.total_and_components()
        if parts is None:
            return None
        start, end = self.span(parts[0])
        return start, end, new_total(self.source[start:end])


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _calls(node: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call) and _dotted(n.func) == name]


def _added(total: str, term: str) -> str:
    return f"{total} + {term}"


_ABBREVIATIONS = (("position", "pos"), ("velocity", "vel"), ("quaternion", "quat"), ("openness", "open"),
                  ("angular", "ang"), ("angle", "theta"), ("height", "z"), ("target", "goal"),
                  ("forces", "force"), ("goal", "target"))


def _wrong_name(name: str, siblings: set[str]) -> str | None:
    """A name an LLM might guess for field ``name`` that the card does not have (``ee_position`` -> ``ee_pos``)."""
    guesses = [name.replace(long, short, 1) for long, short in _ABBREVIATIONS if long in name]
    guesses += [name[:-1] if name.endswith("s") else name + "s"]
    return next((g for g in guesses if g != name and g not in siblings), None)


# each mutation: the reference's source (docstring removed) -> candidate mutants, tried in order until
# the checks reject one; [] when it does not apply to this program
def _missing_attribute(p: _Program) -> list[str]:
    if p.fn is None:
        return []
    fields = set(p.card.fields())
    hits: list[ast.Attribute] = []
    for node in ast.walk(p.fn):
        name = _dotted(node) if isinstance(node, ast.Attribute) else None
        if name and name.startswith("self.") and name[5:] in fields and isinstance(node, ast.Attribute):
            hits.append(node)
    if not hits:
        return []
    node = min(hits, key=lambda n: (n.lineno, n.col_offset))
    field_name = _dotted(node)[5:]  # type: ignore[index]
    prefix, _, last = field_name.rpartition(".")
    siblings = {f.rpartition(".")[2] for f in fields if f.rpartition(".")[0] == prefix}
    wrong = _wrong_name(last, siblings)
    if wrong is None:
        return []
    _, end = p.span(node)
    return [p.replace(end - len(last), end, wrong)]


def _norm_without_axis(p: _Program) -> list[str]:
    for call in sorted(_calls(p.fn, "np.linalg.norm") if p.fn else [], key=lambda c: (c.lineno, c.col_offset)):
        axis = [kw for kw in call.keywords if kw.arg == "axis"]
        if len(call.keywords) == 1 and axis and call.args:
            _, arg_end = p.span(call.args[-1])
            _, end = p.span(axis[0].value)
            return [p.replace(arg_end, end, "")]
    return []


def _import(module: str) -> Callable[[_Program], list[str]]:
    def mutate(p: _Program) -> list[str]:
        after = max((s.end_lineno or s.lineno for s in p.imports), default=0)
        return [p.insert_lines(after + 1, [f"import {module}"])]

    mutate.__name__ = f"_import_{module}"
    return mutate


def _scalar_condition(p: _Program) -> str | None:
    """A per-env test on a distance (``dist < 0.05``) or a scalar field (``height > 0.0``) of the program."""
    scalar_fields = {f"self.{name}" for name, spec in p.card.fields().items() if not spec.shape}
    for s in p.assigns:
        if isinstance(s.value, ast.Call) and _dotted(s.value.func) in ("np.linalg.norm", "np.abs"):
            return f"{s.targets[0].id} < 0.05"  # type: ignore[attr-defined]
    for s in p.assigns:
        if _dotted(s.value) in scalar_fields:
            return f"{s.targets[0].id} > 0.0"  # type: ignore[attr-defined]
    return None


def _scalar_if(p: _Program) -> list[str]:
    condition = _scalar_condition(p)
    edit = p.with_total(lambda t: _added(t, "bonus"))
    if condition is None or edit is None or p.ret is None:
        return []
    ind = p.indent
    mutated = _Program(p.replace(*edit), p.card)
    return [mutated.insert_lines(p.ret.lineno, [f"{ind}bonus = 0.0", f"{ind}if {condition}:", f"{ind}    bonus = 1.0"])]


def _tuple_of_three(p: _Program) -> list[str]:
    if p.ret is None or not (isinstance(p.ret.value, ast.Tuple) and len(p.ret.value.elts) == 2):
        return []
    start, end = p.span(p.ret.value)
    text = p.source[start:end]
    if text.startswith("(") and text.endswith(")"):
        return [p.replace(start, end, text[:-1] + ", {})")]
    return [p.replace(start, end, text + ", {}")]


def _unguarded_division(p: _Program) -> list[str]:
    """``x = 1.0 / e`` for a term ``e`` that is zero for some states (a clipped ramp, ``np.where(..., 0)``),
    then ``np.sqrt`` of a term that can be negative: inf or NaN, the ``non-finite`` rule."""
    def zero_able(value: ast.expr) -> bool:
        return isinstance(value, ast.Call) and _dotted(value.func) in ("np.clip", "np.where", "np.maximum") and any(
            isinstance(a, ast.Constant) and a.value == 0 for a in value.args)

    def term(value: ast.expr) -> bool:  # a computed, signed term: `w * self.torso.x_velocity`
        arithmetic = (isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Sub, ast.Mult, ast.Div))) \
            or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub))
        return arithmetic and not any(isinstance(n, (ast.Compare, ast.BoolOp)) for n in ast.walk(value))

    out = []
    for s in [s for s in p.assigns if zero_able(s.value)][:2]:
        start, end = p.span(s.value)
        out.append(p.replace(start, end, f"1.0 / {p.source[start:end]}"))
    for s in [s for s in p.assigns if term(s.value)][:2]:
        start, end = p.span(s.value)
        out.append(p.replace(start, end, f"np.sqrt({p.source[start:end]})"))
    return out[:3]


def _np_save(p: _Program) -> list[str]:
    parts = p.total_and_components()
    if parts is None or p.ret is None:
        return []
    what = p.text(parts[0]) if isinstance(parts[0], ast.Name) else "action"
    return [p.insert_lines(p.ret.lineno, [f'{p.indent}np.save("reward_debug.npy", {what})'])]


def _dunder(p: _Program) -> list[str]:
    if p.fn is None:
        return []
    return [p.insert_lines(p.fn.body[0].lineno, [f"{p.indent}fields = list(self.__dict__)"])]


def _missing_return(p: _Program) -> list[str]:
    parts = p.total_and_components()
    if parts is None or p.ret is None:
        return []
    start, end = p.span(p.ret)
    if isinstance(parts[0], ast.Name):  # `return total, parts` after `total = ...`: the line is dropped
        line_start = start - p.ret.col_offset
        return [p.source[:line_start] + p.source[end + 1:]]
    return [p.replace(start, end, f"total = {p.text(parts[0])}")]


def _np_random(p: _Program) -> list[str]:
    edit = p.with_total(lambda t: _added(t, "noise"))
    if edit is None or p.ret is None:
        return []
    mutated = _Program(p.replace(*edit), p.card)
    return [mutated.insert_lines(p.ret.lineno, [f"{p.indent}noise = np.random.normal(0.0, 0.01, size=action.shape[:-1])"])]


MUTATIONS: dict[str, Callable[[_Program], list[str]]] = {
    "missing-attribute": _missing_attribute,   # self.robot.ee_pos: a field the card does not have
    "norm-without-axis": _norm_without_axis,   # np.linalg.norm(d): reduces over the batch too
    "import-torch": _import("torch"),
    "import-os": _import("os"),
    "scalar-if": _scalar_if,                   # `if dist < 0.05:` on a batch of distances
    "tuple-of-three": _tuple_of_three,         # return total, parts, {}
    "unguarded-division": _unguarded_division, # 1.0 / a term that can be zero; sqrt of a signed term
    "np-save": _np_save,                       # np.save(...) to debug
    "dunder": _dunder,                         # self.__dict__
    "missing-return": _missing_return,         # the total computed, never returned
    "np-random": _np_random,                   # np.random: not in the np facade
}
"""Realistic LLM mistakes, by name. Some are accepted by the checks (per-env code runs in compat mode);
:func:`seed_teacher_pairs` keeps only the mutants the checks reject."""


def mutants(source: str, card: EnvCard, kinds: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Candidate mutants of a reward program per mutation kind (see :data:`MUTATIONS`)."""
    program = _Program(source, card)
    out = {}
    for kind in kinds or MUTATIONS:
        if kind not in MUTATIONS:
            raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(MUTATIONS)}")
        candidates = [m for m in MUTATIONS[kind](program) if m != source]
        if candidates:
            out[kind] = candidates
    return out


@dataclass
class SeedReport:
    """What :func:`seed_teacher_pairs` did.

    :param pairs: the stored pairs: ``card_id``, ``kind`` (mutation), ``rule``, ``feedback``, ``new``
        (false when the pair was already stored)
    :param skipped: mutations not stored, with why: ``accepted`` (the checks passed the mutant, e.g.
        per-env code in compat mode), ``not applicable``, or the reference itself failing
    """

    pairs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(p["rule"] for p in self.pairs).items()))

    def by_family_rule(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for p in self.pairs:
            out[split_card_id(p["card_id"])[0]][p["rule"]] += 1
        return {fam: dict(sorted(c.items())) for fam, c in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "by_rule": self.by_rule(), "by_family_rule": self.by_family_rule()}


def _teacher_pairs(card: EnvCard, kinds: Sequence[str],
                   per_card: int | None) -> tuple[str, list[dict[str, Any]], list[dict[str, str]]]:
    """One card's teacher pairs: (the reference, pairs to store with their mutant, skipped mutations)."""
    path = card.reference_reward_path()
    if path is None:
        return "", [], []
    reference = strip_module_docstring(path.read_text())
    check = check_program(reference, card)
    if not check.ok:
        return reference, [], [{"card_id": card.id, "kind": "*",
                                "reason": f"the reference fails: {feedback_line(check)}"}]
    candidates = mutants(reference, card, kinds)
    pairs: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for kind in kinds:
        if per_card is not None and len(pairs) >= per_card:
            break
        if kind not in candidates:
            skipped.append({"card_id": card.id, "kind": kind, "reason": "not applicable"})
            continue
        for mutant in candidates[kind]:
            result = check_program(mutant, card)
            if not result.ok:
                pairs.append({"card_id": card.id, "kind": kind, "rule": result.rule, "feedback": feedback_line(result),
                              "mutant": mutant})
                break
        else:
            skipped.append({"card_id": card.id, "kind": kind,
                            "reason": f"accepted ({result.mode} mode)" if result.mode else "accepted"})
    return reference, pairs, skipped


def seed_teacher_pairs(store: RunStore, cards: Iterable[EnvCard | str] | None = None,
                       per_card: int | None = None, kinds: Sequence[str] | None = None,
                       workers: int = 1) -> SeedReport:
    """Teacher-guided pairs: perturb every card's hand-written reference reward, keep what the checks reject.

    For each card with a reference reward (:meth:`EnvCard.reference_reward_path`), the reference
    (its module docstring removed, so the example stays short) is checked once; then each mutation of
    :data:`MUTATIONS` is applied and the mutant checked with :func:`~rewardlab.checks.check_program`.
    A rejected mutant is stored as (mutant, the one-line feedback the checks gave, the reference) with
    ``origin="teacher"``; an accepted one is skipped. Each sandbox trial costs about a quarter second
    (all 19 shipped cards: about 35 s on one core, 27 s with two workers, state cache warm).

    :param store: the run store to write the pairs to
    :param cards: cards or card ids (default: every shipped card)
    :param per_card: stop a card after this many stored pairs (default: every mutation); the mutations
        start at a different kind on each card, so a small ``per_card`` still covers many rules
    :param kinds: only these mutations (default: all of :data:`MUTATIONS`, in its order)
    :param workers: cards checked in parallel (sandbox trials are subprocesses; states are sampled
        first, one card at a time)
    """
    from concurrent.futures import ThreadPoolExecutor

    from rewardlab.cards import load_card
    from rewardlab.rollouts import sample_states

    chosen = [load_card(c) if isinstance(c, str) else c for c in (cards if cards is not None else list_cards())]
    chosen = [c for c in chosen if c.reference_reward_path() is not None]
    kinds = list(kinds or MUTATIONS)
    unknown = [k for k in kinds if k not in MUTATIONS]
    if unknown:
        raise ValueError(f"unknown mutation {unknown[0]!r}; known: {', '.join(MUTATIONS)}")
    starts = [(index * (per_card or 0)) % len(kinds) for index in range(len(chosen))]
    orders = [kinds[start:] + kinds[:start] for start in starts]
    if workers > 1:
        for card in chosen:
            sample_states(card)  # the env rollouts run here, in this thread, before the trials fan out
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda co: _teacher_pairs(co[0], co[1], per_card), zip(chosen, orders)))
    else:
        results = [_teacher_pairs(card, order, per_card) for card, order in zip(chosen, orders)]
    report = SeedReport()
    for card, (reference, pairs, skipped) in zip(chosen, results):
        for pair in pairs:
            _, new = store.add_correction(card.family, card.id, pair["rule"], pair.pop("mutant"), pair["feedback"],
                                          reference, "teacher")
            report.pairs.append({**pair, "new": new})
        report.skipped += skipped
    return report


# -- what a generation run reports -----------------------------------------------------------------
@dataclass
class FirstAttemptStats:
    """How first attempts fared in generation runs, and how error feedback fixed them.

    A *candidate* is one sampled program with its fix attempts (same run, round and sample).

    :param runs: generation runs counted
    :param candidates: sampled programs
    :param first_attempt_failures: candidates whose first attempt the checks rejected
    :param first_attempt_failure_rate: ``first_attempt_failures / candidates``
    :param fixed: failed candidates that a later attempt fixed
    :param fixed_fraction: ``fixed / first_attempt_failures``
    :param mean_attempts_to_fix: over fixed candidates, the fix attempts it took (1: the first
        error-feedback reply passed)
    :param attempts_to_fix: histogram of those attempts
    :param first_failure_rules: the rules the first attempts broke
    """

    runs: int = 0
    candidates: int = 0
    first_attempt_failures: int = 0
    first_attempt_failure_rate: float | None = None
    fixed: int = 0
    fixed_fraction: float | None = None
    mean_attempts_to_fix: float | None = None
    attempts_to_fix: dict[int, int] = field(default_factory=dict)
    first_failure_rules: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _uses_memory(store: RunStore, run_id: str) -> bool | None:
    run = store.get_run(run_id)
    if run is None or run.spec_name != "generate":
        return None
    try:
        config = yaml.safe_load(run.spec_yaml) or {}
    except yaml.YAMLError:
        return None
    return bool(config.get("use_memory", False)) if isinstance(config, dict) else None


def first_attempt_stats(store: RunStore, run_id: str | None = None, *, memory: bool | None = None) -> FirstAttemptStats:
    """First-attempt failure rate, fixed fraction and mean attempts to fix, from the ``candidates`` table.

    :param store: the run store
    :param run_id: one run (default: every run with candidates)
    :param memory: only generation runs that used (``True``) or did not use (``False``) the correction
        memory, as their stored config says; ``None``: all
    """
    rows = store.candidates(run_id)
    if memory is not None:
        wanted = {r: _uses_memory(store, r) == memory for r in {row.run_id for row in rows}}
        rows = [row for row in rows if wanted[row.run_id]]
    chains: dict[tuple[str, int, int], list[CandidateRecord]] = defaultdict(list)
    for row in rows:
        chains[(row.run_id, row.round, row.sample)].append(row)
    stats = FirstAttemptStats(runs=len({key[0] for key in chains}), candidates=len(chains))
    attempts: list[int] = []
    rules: Counter[str] = Counter()
    for chain in chains.values():
        chain.sort(key=lambda r: (r.attempt, r.id))
        if chain[0].status != "rejected":
            continue
        stats.first_attempt_failures += 1
        rules[error_rule(chain[0].error) or "unknown"] += 1
        passed = [r.attempt for r in chain if r.status != "rejected"]
        if passed:
            attempts.append(passed[0] - chain[0].attempt)
    stats.fixed = len(attempts)
    if stats.candidates:
        stats.first_attempt_failure_rate = stats.first_attempt_failures / stats.candidates
    if stats.first_attempt_failures:
        stats.fixed_fraction = stats.fixed / stats.first_attempt_failures
    if attempts:
        stats.mean_attempts_to_fix = sum(attempts) / len(attempts)
        stats.attempts_to_fix = dict(sorted(Counter(attempts).items()))
    stats.first_failure_rules = dict(sorted(rules.items()))
    return stats


__all__ = ["CorrectionMemory", "FirstAttemptStats", "MUTATIONS", "ORIGINS", "SeedReport", "error_rule",
           "feedback_line", "first_attempt_stats", "mutants", "seed_teacher_pairs", "shorten",
           "strip_module_docstring"]
