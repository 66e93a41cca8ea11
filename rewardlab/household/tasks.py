"""Household tasks from templates ("put the apple in the fridge", "turn on the tv", "wash the cup"),
two-step compositions ("wash the cup and then put the cup in the cabinet"), and the three splits E2CL's
evaluation needs: seen tasks, unseen compositions, unseen homes.

A task's goal is a set of facts checked on the world after every step (:meth:`Task.satisfied`); a
composition holds both parts' facts at once. Compositions are split by their *template pair*: a pair
such as (heat, pour) is either seen in training or held out entirely (:data:`UNSEEN_PAIRS`), so the
unseen-composition split tests composing known skills in a new combination. Unseen homes have floor
plans (the room of every movable furniture piece) that no training home has.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from functools import cache

from rewardlab.errors import UserError
from rewardlab.household.world import CLASSES, World, generate_home

#: template -> (instruction, the argument tuples it is instantiated with)
TEMPLATES: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "put_in": ("put the {0} in the {1}", (
        ("apple", "fridge"), ("bread", "fridge"), ("milk", "fridge"), ("juice", "fridge"), ("apple", "cabinet"),
        ("bread", "cabinet"), ("cup", "cabinet"), ("plate", "cabinet"), ("juice", "cabinet"),
        ("cup", "microwave"), ("towel", "washingmachine"), ("rag", "washingmachine"))),
    "put_on": ("put the {0} on the {1}", (
        ("apple", "table"), ("bread", "table"), ("cup", "table"), ("plate", "table"), ("cup", "desk"),
        ("plate", "counter"), ("book", "desk"), ("book", "bookshelf"), ("book", "bed"), ("towel", "towelrack"),
        ("towel", "bed"), ("knife", "counter"))),
    "switch_on": ("turn on the {0}", (("tv",), ("lamp",), ("computer",))),
    "switch_off": ("turn off the {0}", (("tv",), ("lamp",), ("computer",))),
    "wash": ("wash the {0}", (("cup",), ("plate",), ("apple",), ("knife",))),
    "heat": ("heat the {0} in the microwave", (("apple",), ("bread",))),
    "pour": ("pour the {0} into the cup", (("milk",), ("juice",))),
    "cut": ("cut the {0}", (("apple",), ("bread",))),
    "watch": ("watch the {0}", (("tv",),)),
    "read": ("read the {0}", (("book",),)),
    "wipe": ("wipe the {0}", (("table",), ("counter",), ("desk",))),
    "sit": ("sit on the {0}", (("sofa",), ("chair",), ("bed",))),
    "eat": ("eat the {0}", (("apple",), ("bread",))),
}
#: Compositions may share their object only in these orders (wash the cup, then put it away).
SHARED_OBJECT_PAIRS = frozenset({("wash", "put_in"), ("wash", "put_on"), ("cut", "put_on"), ("cut", "put_in"),
                                 ("heat", "eat")})
#: Template pairs held out of training: the unseen-composition split uses only these (every fourth
#: pair by a fixed hash, so the choice is stable and not hand-picked).
UNSEEN_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (a, b) for a, b in itertools.product(TEMPLATES, TEMPLATES)
    if a != b and zlib.crc32(f"{a}+{b}".encode()) % 4 == 0)
SPLITS: tuple[str, ...] = ("train", "unseen_compositions", "unseen_homes")
N_TRAIN_HOMES = 16
N_UNSEEN_HOMES = 8


@dataclass(frozen=True)
class Subtask:
    """One template instantiated: ``Subtask("put_in", ("apple", "fridge"))``."""

    template: str
    args: tuple[str, ...]

    @property
    def instruction(self) -> str:
        return TEMPLATES[self.template][0].format(*self.args)

    @property
    def keys(self) -> frozenset[str]:
        """Objects whose state this subtask decides (two subtasks sharing one would interfere)."""
        extra = {"pour": ("cup",), "cut": ("knife",), "wipe": ("rag",)}.get(self.template, ())
        return frozenset(self.args[:1] + extra)

    def holds(self, w: World) -> bool:
        """Whether the subtask's goal fact holds in ``w``."""
        t, a = self.template, self.args
        if t in ("put_in", "put_on"):
            return w.location.get(a[0]) == (t[4:], a[1])
        if t == "switch_on":
            return "on" in w.states[a[0]]
        if t == "switch_off":
            return "on" not in w.states[a[0]]
        if t in ("wash", "wipe"):
            return "clean" in w.states[a[0]]
        if t == "heat":
            return "hot" in w.states[a[0]]
        if t == "cut":
            return "sliced" in w.states[a[0]]
        if t == "pour":
            return w.filled_with.get("cup") == a[0]
        if t == "watch":
            return ("watched", a[0]) in w.events
        if t == "read":
            return ("read", a[0]) in w.events
        if t == "sit":
            return w.posture == ("sitting", a[0])
        if t == "eat":
            return ("eaten", a[0]) in w.events
        raise AssertionError(t)

    def prepare(self, w: World) -> None:
        """Change the initial world so the goal does not already hold (a task is never solved at reset)."""
        t, a = self.template, self.args
        if t in ("put_in", "put_on") and w.location[a[0]] == (t[4:], a[1]):
            other = next((p for p in CLASSES[a[0]].places if p != a[1]), "counter" if a[1] != "counter" else "table")
            w.location[a[0]] = ("in" if "container" in CLASSES[other].props else "on", other)
        elif t == "switch_on":
            w.states[a[0]].discard("on")
        elif t == "switch_off":
            w.states[a[0]] |= {"on", "plugged"}
        elif t in ("wash", "wipe"):
            w.states[a[0]].discard("clean")
        elif t == "heat":
            w.states[a[0]].discard("hot")
        elif t == "cut":
            w.states[a[0]].discard("sliced")


@dataclass(frozen=True)
class Task:
    """A task: one subtask, or a composition of two done in order."""

    parts: tuple[Subtask, ...]

    @property
    def instruction(self) -> str:
        return " and then ".join(p.instruction for p in self.parts)

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(p.template for p in self.parts)

    def satisfied(self, w: World) -> bool:
        return all(p.holds(w) for p in self.parts)

    def progress(self, w: World) -> float:
        """Fraction of the parts whose goal holds (a task of two parts: 0, 0.5 or 1)."""
        return sum(p.holds(w) for p in self.parts) / len(self.parts)

    @property
    def objects(self) -> tuple[str, ...]:
        """Every object the task involves, tools and appliances included (the agent is told their rooms)."""
        tools = {"wash": ("sink",), "heat": ("microwave",), "pour": ("cup",), "cut": ("knife",), "wipe": ("rag",)}
        found: list[str] = []
        for p in self.parts:
            for o in (*p.args, *tools.get(p.template, ())):
                if o not in found:
                    found.append(o)
        return tuple(found)

    def prepare(self, w: World) -> None:
        """Make the goal not hold at the start, and tell the agent the rooms of the task's objects."""
        for p in self.parts:
            p.prepare(w)
        w.known = self.objects


def single_tasks() -> list[Task]:
    """Every template with every argument tuple, as one-part tasks."""
    return [Task((Subtask(t, args),)) for t, (_, argsets) in TEMPLATES.items() for args in argsets]


def _composable(a: Subtask, b: Subtask) -> bool:
    if a.template == "sit" or a.template == b.template:
        return False  # sitting must come last; a template twice is not a composition
    if (a.template, b.template) in SHARED_OBJECT_PAIRS:
        return a.args[0] == b.args[0]
    return not (a.keys & b.keys)


@cache
def compositions() -> tuple[Task, ...]:
    """Every allowed ordered pair of subtasks (see :data:`SHARED_OBJECT_PAIRS`)."""
    singles = [t.parts[0] for t in single_tasks()]
    return tuple(Task((a, b)) for a, b in itertools.product(singles, singles) if _composable(a, b))


@cache
def split_tasks(split: str) -> tuple[Task, ...]:
    """The tasks of a split: ``train`` and ``unseen_homes`` share the seen tasks (every single task and
    every composition of a seen template pair); ``unseen_compositions`` holds the held-out pairs.

    :raises UserError: an unknown split
    """
    check_split(split)
    if split == "unseen_compositions":
        return tuple(t for t in compositions() if t.templates in UNSEEN_PAIRS)
    return tuple(single_tasks()) + tuple(t for t in compositions() if t.templates not in UNSEEN_PAIRS)


@cache
def train_homes() -> tuple[int, ...]:
    return tuple(range(N_TRAIN_HOMES))


@cache
def unseen_homes() -> tuple[int, ...]:
    """Home ids from 1000 on whose floor plan no training home has (and no earlier unseen home)."""
    seen = {generate_home(h).layout for h in train_homes()}
    found: list[int] = []
    h = 1000
    while len(found) < N_UNSEEN_HOMES:
        layout = generate_home(h).layout
        if layout not in seen:
            seen.add(layout)
            found.append(h)
        h += 1
    return tuple(found)


def split_homes(split: str) -> tuple[int, ...]:
    check_split(split)
    return unseen_homes() if split == "unseen_homes" else train_homes()


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown household split {split!r}; expected one of {', '.join(SPLITS)}")


@cache
def _by_instruction() -> dict[str, Task]:
    return {t.instruction: t for t in (*single_tasks(), *compositions())}


def parse_task(text: str) -> Task:
    """A task from its instruction ("put the apple in the fridge", "wash the cup and then turn on the tv").

    :raises UserError: no template matches, with the closest known instruction
    """
    import difflib

    wanted = " ".join(text.lower().strip().rstrip(".").split())
    known = _by_instruction()
    if wanted in known:
        return known[wanted]
    near = difflib.get_close_matches(wanted, list(known), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise UserError(f"no household task {text!r}{hint}")
