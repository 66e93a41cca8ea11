"""The offline provider: a clearly labelled NO-LLM baseline for the generation loop.

It answers a generation request the way a retrieval baseline would: it takes the hand-written
reference reward of the most similar *other* task in the pool (:mod:`rewardlab.text2reward.retrieval`,
leave-one-out: never the target's own reference), adapts it to the target card, and replies with a
short note and one fenced ``python`` block whose first line says what it is::

    # offline baseline (no LLM): adapted from the hand-written reference reward of <card id>

So ``rewardlab generate --provider offline`` runs the whole loop (prompts, extraction, checks,
training, store) with no endpoint, and its results measure what retrieval alone achieves.

**Adapting** an example to the target means making it read only fields the target card has:

- every ``self.<entity>.<field>`` the example reads must exist in the target with the same rank
  (scalar or vector); MetaWorld cards share Text2Reward's names, so MetaWorld examples fit as they are;
- a field the target lacks is renamed when the target has an unambiguous counterpart: the same field
  name under another entity (``leg.joint_angles`` -> ``legs.joint_angles``), a synonym
  (``angle``/``pitch``, ``height``/``z_position``), or an axis of a vector field
  (``torso.x_velocity`` -> ``torso.velocity[..., 0]``, ``x_position`` -> ``xy_position[..., 0]``);
- constant indices into ``action`` must exist in the target's action;
- the result must pass the static check and run on random states of the target's state view.

An example that cannot be adapted is skipped; the most similar one that fits is used. When no
example fits (a task unlike every other in the pool, e.g. InvertedPendulum), the reply is a generic
template built from the card's success criterion, labelled as such.

**Samples and follow-ups**: sample ``i`` of a request uses the ``(k_offset + i)``-th fitting example
(cycling when there are fewer). Follow-up requests (``purpose`` ``error``, ``reflection`` or
``human``) cannot read the error, the statistics or the feedback; they return the example ranked
after the one the previous program (the last assistant message) was adapted from, so a loop of
rounds walks down the ranking.
"""

from __future__ import annotations

import ast
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard, FieldSpec, load_card
from rewardlab.errors import UserError
from rewardlab.llm.base import LLMError, LLMReply, LLMRequest
from rewardlab.program import ENTRY, RewardProgram
from rewardlab.state import StateExtractor
from rewardlab.text2reward.retrieval import Example, rank_examples

OFFLINE_MODEL = "offline-reference-retrieval"
HEADER = "# offline baseline (no LLM): adapted from the hand-written reference reward of {source}"
GENERIC_HEADER = ("# offline baseline (no LLM): no hand-written reference reward fits {target}; "
                  "generic template from its card")
_HEADER_RE = re.compile(
    r"# offline baseline \(no LLM\): (?:adapted from the hand-written reference reward of (\S+)|no hand-written)")

#: Field-name synonyms tried when a target lacks a field (both directions).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "angle": ("pitch",), "pitch": ("angle",),
    "height": ("z_position",), "z_position": ("height",),
}
_AXIS_FIELD = re.compile(r"^([xyz])_(\w+)$")


@dataclass
class Adaptation:
    """A reference reward made to fit a target card.

    :param example: the retrieved example (its ``score`` is the similarity to the target)
    :param source: the adapted program, header first
    :param renames: source field -> the target expression that replaced it
    """

    example: Example | None
    source: str
    renames: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.example.card_id if self.example else "generic template"


# -- adapting one example --------------------------------------------------------------------------
def _chain(node: ast.AST, root: str) -> list[str] | None:
    """``self.a.b`` -> ``["a", "b"]`` when the attribute chain starts at the name ``root``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == root:
        return parts[::-1]
    return None


def _rank(spec: FieldSpec) -> int:
    return len(spec.shape)


def _counterpart(name: str, spec: FieldSpec, target: EnvCard) -> str | None:
    """The target expression standing in for a field it lacks, or None (see the module docstring)."""
    entity, _, leaf = name.rpartition(".")
    fields = target.fields()

    def pick(cands: list[str]) -> str | None:
        same_entity = [c for c in cands if c.rpartition(".")[0] == entity]
        if len(same_entity) == 1:
            return same_entity[0]
        return cands[0] if len(cands) == 1 else None

    same_leaf = [n for n, s in fields.items() if n.rpartition(".")[2] == leaf and _rank(s) == _rank(spec)]
    if (hit := pick(same_leaf)) is not None:
        return f"self.{hit}"
    synonyms = [n for n, s in fields.items()
                if n.rpartition(".")[2] in SYNONYMS.get(leaf, ()) and _rank(s) == _rank(spec)]
    if (hit := pick(synonyms)) is not None:
        return f"self.{hit}"
    m = _AXIS_FIELD.match(leaf)
    if m and not spec.shape:
        axis, base = m.groups()
        vectors = []
        for n, s in fields.items():
            tleaf = n.rpartition(".")[2]
            if len(s.shape) != 1:
                continue
            if tleaf == base and s.shape[0] >= 3:
                vectors.append((n, "xyz".index(axis)))
            elif (am := re.match(rf"^([xyz]+)_{re.escape(base)}$", tleaf)) and axis in am.group(1) \
                    and s.shape[0] == len(am.group(1)):
                vectors.append((n, am.group(1).index(axis)))
        hit = pick([n for n, _ in vectors])
        if hit is not None:
            return f"self.{hit}[..., {dict(vectors)[hit]}]"
    return None


def adapt_reference(example: Example, target: EnvCard, source_card: EnvCard | None = None) -> Adaptation | None:
    """Adapt a reference reward to the target card, or None when it cannot read the target's fields.

    :param example: the reference reward (from :func:`rewardlab.text2reward.retrieval.rank_examples`)
    :param target: the card the program is for
    :param source_card: the example's card (loaded by id when not given)
    """
    source_card = source_card or load_card(example.card_id)
    try:
        tree = ast.parse(example.source)
    except SyntaxError:
        return None
    entry = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY), None)
    if entry is None or not entry.args.args:
        return None
    root = entry.args.args[0].arg
    action_name = entry.args.args[1].arg if len(entry.args.args) > 1 else "action"
    src_fields, tgt_fields = source_card.fields(), target.fields()
    src_entities = {k: v for k, v in source_card.entities.items() if not isinstance(v, FieldSpec)}
    tgt_entities = {k: v for k, v in target.entities.items() if not isinstance(v, FieldSpec)}

    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    spans: list[tuple[ast.AST, str]] = []  # (node of the field access, source field name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        parts = _chain(node, root)
        if parts is None:
            continue
        # Longest prefix that is a field; else an entity used whole.
        sub: ast.AST = node
        for cut in range(len(parts), 0, -1):
            name = ".".join(parts[:cut])
            if name in src_fields:
                spans.append((sub, name))
                break
            if cut == 1 and name in src_entities:
                want = src_entities[name]
                have = tgt_entities.get(name, {})
                if any(f not in have or _rank(have[f]) != _rank(s) for f, s in want.items()):
                    return None
                break
            sub = sub.value  # type: ignore[attr-defined]
        else:
            return None  # reads something that is not a field of its own card
    if any(isinstance(n, ast.Name) and n.id == root and id(n) not in inner for n in ast.walk(tree)):
        # `self` handed on whole (to a helper): every field of the source must exist in the target.
        if any(f not in tgt_fields or _rank(tgt_fields[f]) != _rank(s) for f, s in src_fields.items()):
            return None

    renames: dict[str, str] = {}
    for _, name in spans:
        if name in renames or (name in tgt_fields and _rank(tgt_fields[name]) == _rank(src_fields[name])):
            continue
        replacement = _counterpart(name, src_fields[name], target)
        if replacement is None:
            return None
        renames[name] = replacement

    action_dim = int(np.prod(target.action.shape))
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == action_name:
            consts = [c.value for c in ast.walk(node.slice) if isinstance(c, ast.Constant) and isinstance(c.value, int)]
            if any(c >= action_dim or c < -action_dim for c in consts):
                return None

    source = _apply_renames(example.source, [(n, renames[name]) for n, name in spans
                                             if name in renames and isinstance(n, ast.expr)])
    source = _with_header(source, tree, example, target, renames)
    if not _runs_on(source, target):
        return None
    return Adaptation(example, source, renames)


def _apply_renames(source: str, edits: list[tuple[ast.expr, str]]) -> str:
    lines = source.split("\n")
    for node, text in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        assert node.lineno == node.end_lineno, "a field access spans one line"
        row = lines[node.lineno - 1]
        # ast offsets are in UTF-8 bytes
        raw = row.encode()
        lines[node.lineno - 1] = (raw[: node.col_offset] + text.encode() + raw[node.end_col_offset:]).decode()
    return "\n".join(lines)


def _with_header(source: str, tree: ast.Module, example: Example, target: EnvCard, renames: dict[str, str]) -> str:
    """Replace the reference's docstring (it must not call itself a reference) and add the header."""
    lines = source.split("\n")
    doc = ast.get_docstring(tree, clean=True)
    first = tree.body[0] if tree.body else None
    notes = ""
    if doc is not None and isinstance(first, ast.Expr):
        lines = lines[: first.lineno - 1] + lines[first.end_lineno:]
        notes = re.sub(r"^Hand-written reference reward for \S+ \(not LLM output\)\.?\s*", "", doc).strip()
    while lines and not lines[0].strip():
        lines.pop(0)
    header = [HEADER.format(source=example.card_id),
              f"# target: {target.id} (instruction similarity {example.score:.3f}); the weights and",
              "# thresholds are the source task's, not tuned for the target."]
    if renames:
        header.append("# fields renamed for the target: "
                      + ", ".join(f"self.{k} -> {v}" for k, v in renames.items()))
    docstring = [f'"""Offline baseline (no LLM) for {target.id}: the reward written by hand for '
                 f'{example.card_id}, adapted.']
    if notes:
        docstring += ["", f"Notes of the {example.card_id} reward:", *notes.replace('"""', "'''").split("\n")]
    docstring.append('"""')
    return "\n".join(header + docstring + lines).rstrip("\n") + "\n"


def _runs_on(source: str, card: EnvCard, batch: int = 8, seed: int = 0) -> bool:
    """Static check plus one call on random states of the card's view (in process: the source is a
    shipped reference reward with renamed fields, not untrusted text)."""
    try:
        program = RewardProgram(source, origin="offline")
        extractor = StateExtractor(card)
        rng = np.random.default_rng(seed)
        flat = rng.uniform(-1.0, 1.0, size=(batch, extractor.dim))
        action = np.stack([np.asarray(card.action.sample(rng), dtype=np.float64) for _ in range(batch)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program.bind(card)(extractor.view(flat), action)
    except (UserError, ValueError, TypeError, ArithmeticError):
        return False
    return True


# -- the generic fallback ----------------------------------------------------------------------------
def generic_template(target: EnvCard) -> Adaptation:
    """A reward built from the card alone, for a task no reference reward fits.

    A threshold success (``FIELD < v``) is paid as progress on that field plus a success bonus; a
    ``survived`` task as a bonus per step alive; an event (``info.KEY``, which usually ends the episode
    when it happens) as a cost per step, so that reaching it sooner is better (a bonus per step alive
    would pay for never finishing). Continuous (Box) actions add a small action penalty; integer
    actions (indices) do not: their square means nothing.
    """
    rule = target.success_rule
    box = target.action.type == "box"
    body = ["def compute_dense_reward(self, action):"]
    if box:
        body += ["    # Small action penalty: smooth motions without making standing still the best policy.",
                 "    ctrl = -0.01 * np.sum(np.square(action), axis=-1)"]
    else:
        body += ["    # Integer actions (indices): no action penalty; one zero per env sets the batch shape.",
                 "    ctrl = 0.0 * np.sum(action, axis=-1) if action.ndim > 1 else 0.0 * action"]
    if rule is not None and rule.kind == "threshold":
        sign = "-" if rule.op == "<" else ""
        spec = target.fields()[rule.key]
        value = f"self.{rule.key}" if not spec.shape else f"np.linalg.norm(self.{rule.key}, axis=-1)"
        body += [
            f"    value = {value}",
            f"    # Progress: {'lower' if rule.op == '<' else 'higher'} is better (weight 1: the main term).",
            f"    progress = {sign}1.0 * value",
            f"    # Success bonus while {rule.key} {rule.op} {rule.value:g} (weight 1: same order as progress).",
            f"    success = np.where(value {rule.op} {rule.value!r}, 1.0, 0.0)",
            "    total = progress + success + ctrl",
            '    return total, {"progress": progress, "success": success, "ctrl": ctrl}',
        ]
    elif rule is not None and rule.kind == "info":
        body += [
            f"    # Step cost: -1 per step until info['{rule.key}'] ends the episode, so finishing sooner is better.",
            "    step = np.ones_like(ctrl) * -1.0",
            "    total = step + ctrl",
            '    return total, {"step": step, "ctrl": ctrl}' if box else '    return total, {"step": step}',
        ]
    else:
        body += [
            "    # Alive bonus: 1 per step; the episode ends when the task fails, so living longer is better.",
            "    alive = np.ones_like(ctrl)",
            "    total = alive + ctrl",
            '    return total, {"alive": alive, "ctrl": ctrl}' if box else '    return total, {"alive": alive}',
        ]
    source = "\n".join([
        GENERIC_HEADER.format(target=target.id),
        f'"""Offline baseline (no LLM) for {target.id}: a generic reward from the card\'s success criterion."""',
        "import numpy as np",
        "",
        "",
        *body,
    ]) + "\n"
    return Adaptation(None, source)


def offline_candidates(target: EnvCard, instruction: str | None = None) -> list[Adaptation]:
    """Every pool example adapted to the target, most similar first (leave-one-out); the generic
    template alone when none fits."""
    fitting = []
    for example in rank_examples(target, instruction, exclude_self=True, family="prefer"):
        if example.card_id == target.id:  # never the target's own reference
            continue
        adapted = adapt_reference(example, target)
        if adapted is not None:
            fitting.append(adapted)
    return fitting or [generic_template(target)]


# -- the provider --------------------------------------------------------------------------------------
_PURPOSE_NOTES = {
    "error": "the previous program failed a check; the offline baseline cannot read the error, so this is "
             "the next most similar reference reward",
    "reflection": "the offline baseline cannot read training statistics; this is the next most similar "
                  "reference reward",
    "human": "the offline baseline cannot read feedback; this is the next most similar reference reward",
}


class OfflineProvider:
    """A no-LLM baseline that answers with adapted hand-written reference rewards (module docstring).

    :param log: the exchange log; every exchange is recorded as provider ``offline`` when given
    :param k_offset: start this many places down the ranking (``1``: skip the most similar example),
        e.g. to give repeated runs different programs
    :param model: the model name written in replies (the default says what it is)
    """

    name = "offline"

    def __init__(self, log: Any = None, k_offset: int = 0, model: str | None = None):
        if k_offset < 0:
            raise ValueError(f"k_offset must be >= 0, got {k_offset}")
        self.log = log
        self.k_offset = k_offset
        self.model = model or OFFLINE_MODEL
        self._cache: dict[tuple[str, str | None], list[Adaptation]] = {}

    def candidates(self, card: EnvCard, instruction: str | None = None) -> list[Adaptation]:
        key = (card.model_dump_json(), instruction)
        if key not in self._cache:
            self._cache[key] = offline_candidates(card, instruction)
        return self._cache[key]

    def complete(self, request: LLMRequest) -> LLMReply:
        """Answer with ``request.n`` adapted reference rewards for ``request.metadata["card_id"]``.

        Reads ``metadata["purpose"]`` (``initial`` by default; ``error``, ``reflection``, ``human``: the
        next-ranked example, see the module docstring) and ``metadata["instruction"]`` (a user's
        instruction to rank by instead of the card's), never the prompt text.
        """
        started = time.perf_counter()
        meta = request.metadata or {}
        card_id = meta.get("card_id")
        if not card_id:
            raise LLMError("the offline provider needs request.metadata['card_id'] (the task to answer for)")
        card = load_card(card_id)
        purpose = str(meta.get("purpose") or "initial")
        cands = self.candidates(card, meta.get("instruction"))
        start = self.k_offset
        if purpose != "initial":
            previous = _previous_origin(request.messages)
            index = next((i for i, c in enumerate(cands) if c.origin == previous), None)
            start = index + 1 if index is not None else self.k_offset
        texts = [self._reply_text(card, cands, (start + i) % len(cands), purpose) for i in range(max(1, request.n))]
        reply = LLMReply(texts=texts, model=self.model, provider=self.name,
                         latency_s=time.perf_counter() - started)
        if self.log is not None:
            reply.exchange_id = self.log.record(self.name, request, reply, None)
        return reply

    def _reply_text(self, card: EnvCard, cands: list[Adaptation], rank: int, purpose: str) -> str:
        chosen = cands[rank]
        if chosen.example is None:
            why = (f"no hand-written reference reward in the pool reads only fields that {card.id} has, so this "
                   "is a generic template built from the card's success criterion")
        else:
            why = (f"this is the hand-written reference reward of {chosen.example.card_id} (similarity "
                   f"{chosen.example.score:.2f} by instruction; number {rank + 1} of the {len(cands)} references "
                   f"that fit {card.id}), adapted to {card.id}'s fields")
            if chosen.renames:
                why += " (" + ", ".join(f"self.{k} -> {v}" for k, v in chosen.renames.items()) + ")"
        note = f" Note: {_PURPOSE_NOTES[purpose]}." if purpose in _PURPOSE_NOTES else ""
        source = chosen.source.rstrip()
        if purpose != "initial":  # a revision is a new version, even when it reuses a reference seen before
            first, _, rest = source.partition("\n")
            note_line = f"# offline {purpose} revision: the next-ranked reference (this baseline cannot read feedback)"
            source = f"{first}\n{note_line}\n{rest}"
        return (f"Offline baseline: no language model was called. It was not written for this task: {why}.{note}\n\n"
                f"```python\n{source}\n```\n")


def _previous_origin(messages: list[dict[str, str]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            m = _HEADER_RE.search(message.get("content", ""))
            if m:
                return m.group(1) or "generic template"
            return None
    return None


__all__ = ["OfflineProvider", "Adaptation", "adapt_reference", "offline_candidates", "generic_template",
           "OFFLINE_MODEL", "HEADER"]
