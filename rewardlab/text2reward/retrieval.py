"""Few-shot retrieval: the hand-written rewards most similar to a task, by instruction.

Text2Reward retrieves its few-shot example with OpenAI embeddings in a vector store (k=1, the target
task left out). Here similarity is the cosine of TF-IDF vectors of the instruction plus the task name,
computed with numpy: no model download, no network, deterministic. Two pools:

- :func:`reference_pool`: every shipped card's reference reward (:meth:`EnvCard.reference_reward_path`),
  which the offline baseline adapts;
- :func:`few_shot_pool`: what a prompt may show (:func:`retrieve_examples`). A reference that
  reproduces its env's own reward (the MuJoCo ones: "Reproduces the env's own ... reward") is left
  out: shown for a sibling task it hands the model that task's answer (Walker2d's reward is Hopper's
  with other bounds). In its place come hand-written rewards for *other* behaviours of the same
  robots, in ``prompts/examples/<family>/`` (a back-flipping cheetah, an ant walking sideways), each
  opening with ``Few-shot example for <card id>, written by hand`` and ``Task: <instruction>``.

The task name counts because it is the shortest description of the task (``drawer-open`` and
``drawer-close`` share the object; their instructions share few words). Tokens are lower-cased words
with a light suffix stripping (``pulling`` ~ ``pull``, ``closes`` ~ ``close``) and common English words
dropped.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from rewardlab.cards import EnvCard, list_cards, split_card_id
from rewardlab.resources import resource_dir

#: How many times the task-name tokens count against the instruction's.
TASK_NAME_WEIGHT = 2

_STOPWORDS = frozenset("""
a an and are as at be by for from in into is it its of on or so such that the their then there these
this to until up with without while when where which who will as possible using keep make little
""".split())


@dataclass(frozen=True)
class Example:
    """A hand-written reward offered as a few-shot example (or adapted by the offline baseline).

    :param card_id: the card the reward was written for
    :param instruction: that card's instruction
    :param source: the reward program's source
    :param score: similarity to the query (cosine in [0, 1]; 0 in :func:`reference_pool`)
    """

    card_id: str
    instruction: str
    source: str
    score: float = 0.0

    @property
    def family(self) -> str:
        return split_card_id(self.card_id)[0]

    @property
    def task(self) -> str:
        return split_card_id(self.card_id)[1]

    @property
    def prompt_source(self) -> str:
        """The source as shown in prompts: the code and its comments without the module docstring.

        The prompt already names the task above the code; the docstring would add length (the MuJoCo
        references' ran to a dozen lines on how they match the env), and a model that copies a
        reference's "Hand-written reference reward for <id>" would write a program that calls itself a
        reference (:attr:`rewardlab.program.RewardProgram.is_reference`)."""
        return strip_module_docstring(self.source)


def strip_module_docstring(source: str) -> str:
    """``source`` without its module docstring (and the blank lines after it); unchanged if it has none
    or does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    first = tree.body[0] if tree.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)) or first.end_lineno is None:
        return source
    lines = source.splitlines(keepends=True)
    rest = lines[first.end_lineno:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    return "".join(lines[: first.lineno - 1] + rest)


#: A reference reward whose docstring says this reproduces its env's own reward: no few-shot example.
ENV_REWARD_MARK = "Reproduces the env's own"
_EXAMPLE_HEADER = re.compile(r"Few-shot example for (\S+), written by hand.*?\nTask: ([^\n]+)", re.S)


@lru_cache(maxsize=1)
def _pool() -> tuple[Example, ...]:
    pool = []
    for card in list_cards():
        path = card.reference_reward_path()
        if path is not None:
            pool.append(Example(card.id, card.instruction, path.read_text()))
    return tuple(pool)


@lru_cache(maxsize=1)
def _few_shot_pool() -> tuple[Example, ...]:
    pool = [ex for ex in _pool() if ENV_REWARD_MARK not in ex.source]
    folder = resource_dir("prompts") / "examples"
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
        source = path.read_text()
        header = _EXAMPLE_HEADER.search(source)
        if header is None:
            raise ValueError(f"{path}: a few-shot example opens with 'Few-shot example for <card id>, "
                             "written by hand' and a 'Task: <instruction>' line")
        pool.append(Example(header.group(1), header.group(2).strip(), source))
    return tuple(pool)


def reference_pool() -> list[Example]:
    """Every shipped card with a hand-written reference reward, sorted by card id (score 0)."""
    return list(_pool())


def few_shot_pool() -> list[Example]:
    """The rewards a few-shot prompt may show (see the module docstring), score 0."""
    return list(_few_shot_pool())


def tokenize(text: str) -> list[str]:
    """Lower-cased word stems of ``text``, without common English words and single letters."""
    out = []
    for word in re.findall(r"[a-z]+", text.lower()):
        if len(word) < 2 or word in _STOPWORDS:
            continue
        out.append(_stem(word))
    return out


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _document(instruction: str, task: str) -> list[str]:
    task_words = re.sub(r"-v\d+$", "", task.split("/")[-1])
    return tokenize(instruction) + tokenize(task_words.replace("-", " ").replace("_", " ")) * TASK_NAME_WEIGHT


def tfidf_similarity(query: list[str], documents: list[list[str]]) -> np.ndarray:
    """Cosine similarity of the query's TF-IDF vector to each document's.

    IDF is fitted on the documents plus the query, smoothed (``log((1 + n) / (1 + df)) + 1``) so a
    word found everywhere still counts a little; term frequencies are raw counts.

    :param query: the query's tokens
    :param documents: each document's tokens
    :return: ``(len(documents),)`` similarities in [0, 1]
    """
    corpus = documents + [query]
    vocab = {w: i for i, w in enumerate(sorted({w for doc in corpus for w in doc}))}
    counts = np.zeros((len(corpus), len(vocab)))
    for row, doc in enumerate(corpus):
        for word, c in Counter(doc).items():
            counts[row, vocab[word]] = c
    df = (counts > 0).sum(axis=0)
    idf = np.log((1 + len(corpus)) / (1 + df)) + 1.0
    vectors = counts * idf
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    vectors /= norms[:, None]
    return vectors[:-1] @ vectors[-1]


def rank_examples(
    card: EnvCard,
    instruction: str | None = None,
    exclude_self: bool = True,
    family: Literal["prefer", "only", "any"] = "prefer",
    pool: Sequence[Example] | None = None,
) -> list[Example]:
    """Every pool example ranked by similarity to the card's task, best first (see :func:`retrieve_examples`).

    :param pool: the examples to rank (default: :func:`reference_pool`, which the offline baseline adapts)
    """
    if family not in ("prefer", "only", "any"):
        raise ValueError(f"family must be 'prefer', 'only' or 'any', not {family!r}")
    pool = [ex for ex in (_pool() if pool is None else pool) if not (exclude_self and ex.card_id == card.id)]
    if family == "only":
        pool = [ex for ex in pool if ex.family == card.family]
    if not pool:
        return []
    query = _document(instruction or card.instruction, card.task)
    scores = tfidf_similarity(query, [_document(ex.instruction, ex.task) for ex in pool])
    ranked = [Example(ex.card_id, ex.instruction, ex.source, round(float(s), 6)) for ex, s in zip(pool, scores)]

    def order(ex: Example) -> tuple[int, float, str]:
        other_family = int(family == "prefer" and ex.family != card.family)
        return other_family, -ex.score, ex.card_id

    return sorted(ranked, key=order)


def retrieve_examples(
    card: EnvCard,
    k: int = 1,
    exclude_self: bool = True,
    instruction: str | None = None,
    family: Literal["prefer", "only", "any"] = "prefer",
) -> list[Example]:
    """The ``k`` few-shot examples (:func:`few_shot_pool`) whose tasks read most like the card's, best first.

    :param card: the target task
    :param k: how many examples (Text2Reward uses 1); fewer come back if the pool is smaller
    :param exclude_self: leave every example written for the target card out (leave-one-out, the
        default: a few-shot prompt that shows the answer measures nothing)
    :param instruction: the instruction to match instead of the card's (a user's override)
    :param family: ``prefer``: examples from the card's simulator family first (MetaWorld examples
        for a MetaWorld task), then the rest; ``only``: the card's family alone; ``any``: by score only
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return rank_examples(card, instruction, exclude_self, family, pool=_few_shot_pool())[:k]


__all__ = ["Example", "reference_pool", "few_shot_pool", "retrieve_examples", "rank_examples", "tokenize",
           "tfidf_similarity", "strip_module_docstring", "ENV_REWARD_MARK"]
