"""A symbolic household: rooms, objects with states and relations, 25 templated actions with
VirtualHome-like preconditions, and natural-language feedback on every infeasible action.

This is the world the E2CL method (Wang et al., Findings of EMNLP 2024, arXiv:2409.03256) needs and that
VirtualHome provides in the paper; VirtualHome's simulator is a downloaded binary, so rewardlab builds
its own. Feedback follows the paper's sources (``shared/research/reward_design_algorithms.md`` §6):
EvolvingGraph-style precondition errors in words ("apple not in hand. Robot agent should hold apple
first.") and interface checks (unknown verb, wrong number of arguments, unknown object, an object put
into itself).

A home is generated from its integer id (:func:`generate_home`): the same id gives the same home on any
machine. :class:`World` holds the mutable state and executes :class:`Action`\\ s, returning a
:class:`Feedback` whose ``kind`` names the error class (counted in the E2CL datasets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rewardlab.errors import UserError

# -- the catalogue ---------------------------------------------------------------------------------
ROOMS: tuple[str, ...] = ("kitchen", "livingroom", "bedroom", "bathroom")


@dataclass(frozen=True)
class ObjectClass:
    """One kind of object. A home holds exactly one instance of each, named by the class.

    :param name: the object's name in text (one lowercase word)
    :param props: affordances (``grabbable``, ``container``, ``surface``, ``openable``, ``switch``,
        ``plug``, ``sittable``, ``lieable``, ``edible``, ``cuttable``, ``washable``, ``pourable``,
        ``fillable``, ``readable``, ``knife``, ``rag``, ``wipeable``, ``watchable``, ``typeable``, ``sink``)
    :param places: furniture: the rooms it may stand in; a grabbable object: the furniture it may start
        in or on
    """

    name: str
    props: frozenset[str]
    places: tuple[str, ...]

    @property
    def furniture(self) -> bool:
        return "grabbable" not in self.props


def _cls(name: str, props: str, places: str) -> ObjectClass:
    return ObjectClass(name, frozenset(props.split()), tuple(places.split()))


#: Furniture (fixed in a room) then grabbable objects. Candidate rooms/holders vary between homes.
CATALOGUE: tuple[ObjectClass, ...] = (
    _cls("fridge", "container openable", "kitchen"),
    _cls("cabinet", "container openable", "kitchen"),
    _cls("counter", "surface wipeable", "kitchen"),
    _cls("microwave", "container openable switch plug", "kitchen"),
    _cls("sink", "sink switch", "kitchen bathroom"),
    _cls("table", "surface wipeable", "kitchen livingroom"),
    _cls("chair", "sittable", "kitchen livingroom"),
    _cls("sofa", "sittable lieable", "livingroom"),
    _cls("tv", "switch plug watchable", "livingroom bedroom"),
    _cls("desk", "surface wipeable", "livingroom bedroom"),
    _cls("computer", "switch plug typeable", "desk"),  # stands in the desk's room
    _cls("bookshelf", "surface", "livingroom bedroom"),
    _cls("bed", "surface sittable lieable", "bedroom"),
    _cls("lamp", "switch plug", "bedroom livingroom"),
    _cls("washingmachine", "container openable switch plug", "bathroom kitchen"),
    _cls("towelrack", "surface", "bathroom"),
    _cls("apple", "grabbable edible cuttable washable", "fridge counter table"),
    _cls("bread", "grabbable edible cuttable", "counter cabinet table"),
    _cls("cup", "grabbable washable fillable", "cabinet table counter desk"),
    _cls("plate", "grabbable washable", "cabinet table counter"),
    _cls("milk", "grabbable pourable", "fridge"),
    _cls("juice", "grabbable pourable", "fridge cabinet"),
    _cls("book", "grabbable readable", "bookshelf desk bed"),
    _cls("knife", "grabbable knife washable", "counter cabinet"),
    _cls("rag", "grabbable rag washable", "counter washingmachine towelrack"),
    _cls("towel", "grabbable washable", "towelrack washingmachine bed"),
)
CLASSES: dict[str, ObjectClass] = {c.name: c for c in CATALOGUE}
OBJECTS: tuple[str, ...] = tuple(c.name for c in CATALOGUE)
#: Everything an action argument may name: rooms, then objects. Index 0 of an argument slot is "none".
ENTITIES: tuple[str, ...] = ROOMS + OBJECTS
#: Furniture whose room varies between homes: a home's *layout* is the room of each (unseen-home split).
MOVABLE_FURNITURE: tuple[str, ...] = tuple(c.name for c in CATALOGUE if c.furniture and len(c.places) > 1)


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verb:
    """A templated action: ``template`` with ``{0}``/``{1}`` for its arguments (``put {0} in {1}``)."""

    name: str
    template: str

    @property
    def arity(self) -> int:
        return self.template.count("{")

    @property
    def words(self) -> tuple[str, ...]:
        """The template's fixed words, e.g. ``("put", "in")``."""
        return tuple(w for w in self.template.split() if not w.startswith("{"))


VERBS: tuple[Verb, ...] = tuple(Verb(n, t) for n, t in (
    ("walk", "walk to {0}"), ("grab", "grab {0}"), ("drop", "drop {0}"), ("put_on", "put {0} on {1}"),
    ("put_in", "put {0} in {1}"), ("open", "open {0}"), ("close", "close {0}"), ("switch_on", "switch on {0}"),
    ("switch_off", "switch off {0}"), ("plug_in", "plug in {0}"), ("unplug", "unplug {0}"), ("wash", "wash {0}"),
    ("wipe", "wipe {0}"), ("cut", "cut {0}"), ("eat", "eat {0}"), ("drink", "drink {0}"),
    ("pour", "pour {0} into {1}"), ("sit", "sit on {0}"), ("lie", "lie on {0}"), ("stand_up", "stand up"),
    ("look_at", "look at {0}"), ("watch", "watch {0}"), ("read", "read {0}"), ("type", "type on {0}"),
    ("touch", "touch {0}"),
))
VERB_INDEX: dict[str, int] = {v.name: i for i, v in enumerate(VERBS)}


def action_doc() -> str:
    """The cards' action doc: what each index of the ``(verb, argument, argument)`` triple means, from
    :data:`VERBS` and :data:`ENTITIES` (a test keeps the cards equal to it)."""
    verbs = ", ".join(f"{i} {v.template.format('A', 'B')}" for i, v in enumerate(VERBS))
    entities = ", ".join(f"{i + 1} {name}" for i, name in enumerate(ENTITIES))
    return (f"(verb, A, B) indices. Verbs: {verbs}. Arguments A and B (0: none; a verb with one argument "
            f"ignores B): {entities}.")


#: Verbs the agent may do while sitting or lying (everything else needs it to stand up first).
SEATED_VERBS = frozenset({"stand_up", "watch", "look_at", "read", "eat", "drink"})
#: The error kinds :class:`Feedback` may carry (the E2CL dataset counts them).
ERROR_KINDS: tuple[str, ...] = (
    "unknown_verb", "wrong_arguments", "unknown_object", "self_reference", "not_in_room", "inside_closed",
    "not_close", "not_held", "hands_full", "cannot", "state", "posture", "missing_tool",
)


@dataclass(frozen=True)
class Action:
    """A verb with its arguments (object or room names). ``text`` is its templated form."""

    verb: str
    args: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return VERBS[VERB_INDEX[self.verb]].template.format(*self.args)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Feedback:
    """What the world says about one action.

    :param executable: the action's preconditions held and its effects were applied
    :param message: natural-language feedback: ``"True"`` when executable, else the reason and the fix
        ("cup not in hand. Robot agent should hold cup first.")
    :param kind: ``None`` when executable, else one of :data:`ERROR_KINDS`
    """

    executable: bool
    message: str
    kind: str | None = None

    @property
    def text(self) -> str:
        """E2CL's feedback target: ``True`` or ``Error, <reason>`` (the paper's format)."""
        return "True" if self.executable else f"Error, {self.message}"


OK = Feedback(True, "True")


class Infeasible(Exception):
    """Raised inside :meth:`World.execute` when a precondition fails; becomes a :class:`Feedback`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def parse_action(text: str) -> Action | Feedback:
    """A step in words -> an :class:`Action`, or the interface error a VirtualHome script check gives.

    Words are matched against the templates (``put X in Y`` and ``put X on Y`` are two verbs); a
    leading ``the`` before an argument is dropped.

    :return: the action, or a non-executable :class:`Feedback` (``unknown_verb``, ``wrong_arguments``,
        ``unknown_object``)
    """
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if w != "the"]
    if not words:
        return Feedback(False, "The step is empty. Robot agent should give an action.", "unknown_verb")
    same_start = [v for v in VERBS if v.words[0] == words[0]]
    if not same_start:
        return Feedback(False, f"Unknown action {words[0]}. Robot agent should use a known action.", "unknown_verb")
    for verb in same_start:
        parts = verb.template.split()
        if len(parts) != len(words):
            continue
        args = [w for p, w in zip(parts, words, strict=True) if p.startswith("{")]
        fixed = [w for p, w in zip(parts, words, strict=True) if not p.startswith("{")]
        if tuple(fixed) != verb.words:
            continue
        for a in args:
            if a not in ENTITIES:
                return Feedback(False, f"There is no {a} in this home.", "unknown_object")
        return Action(verb.name, tuple(args))
    forms = " or ".join(v.template.format("<object>", "<object>") for v in same_start)
    return Feedback(False, f"Wrong arguments for {words[0]}. Robot agent should write {forms}.", "wrong_arguments")


# -- homes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Home:
    """A generated home: where each piece of furniture stands and the initial state.

    :param home_id: the id it was generated from
    :param rooms: furniture -> room
    :param holders: grabbable object -> the furniture it starts in/on
    :param states: object -> its initial state flags (``open``, ``on``, ``plugged``, ``clean``)
    """

    home_id: int
    rooms: dict[str, str]
    holders: dict[str, str]
    states: dict[str, frozenset[str]]

    @property
    def layout(self) -> tuple[str, ...]:
        """The room of every furniture piece whose room varies: homes with equal layouts share a floor plan."""
        return tuple(self.rooms[f] for f in MOVABLE_FURNITURE)


@lru_cache(maxsize=4096)
def generate_home(home_id: int) -> Home:
    """The home with this id, the same on every machine (a numpy generator seeded by the id). Cached:
    treat the returned home as read-only (worlds copy its states).

    :raises UserError: a negative id
    """
    if home_id < 0:
        raise UserError(f"home id must be >= 0 (got {home_id})")
    rng = np.random.default_rng([home_id, 0xE2C1])
    rooms: dict[str, str] = {}
    for c in CATALOGUE:
        if c.furniture:
            rooms[c.name] = rooms[c.places[0]] if c.places[0] in rooms else str(rng.choice(c.places))
    holders = {c.name: str(rng.choice(c.places)) for c in CATALOGUE if not c.furniture}
    states: dict[str, frozenset[str]] = {}
    for c in CATALOGUE:
        s = set()
        if "openable" in c.props and rng.random() < 0.25:
            s.add("open")
        if "plug" in c.props and rng.random() < 0.7:
            s.add("plugged")
        powered = "plug" not in c.props or "plugged" in s
        if "switch" in c.props and powered and "open" not in s and rng.random() < 0.2:
            s.add("on")
        if ("washable" in c.props or "wipeable" in c.props) and rng.random() < 0.6:
            s.add("clean")
        states[c.name] = frozenset(s)
    return Home(home_id, rooms, holders, states)


# -- the mutable world -----------------------------------------------------------------------------
@dataclass
class World:
    """The state of a home during an episode, and the rules of every verb.

    Relations: ``location[x]`` is ``("in", container)``, ``("on", surface)``, ``("hand", "")``,
    ``("floor", room)`` or ``("gone", "")`` (eaten) for a grabbable object; furniture stays in
    ``room_of_furniture``. The agent has a room, the object it is close to (or ``None``), up to two held
    objects and a posture.
    """

    home: Home
    location: dict[str, tuple[str, str]]
    states: dict[str, set[str]]
    room: str = "kitchen"
    near: str | None = None
    holding: list[str] = field(default_factory=list)
    posture: tuple[str, str] = ("standing", "")
    events: set[tuple[str, str]] = field(default_factory=set)  # ("watched", "tv"), ("read", "book"), ...
    filled_with: dict[str, str] = field(default_factory=dict)
    known: tuple[str, ...] = ()  # objects whose room the agent is told (the task's objects and tools)

    @classmethod
    def from_home(cls, home: Home, start_room: str = "livingroom") -> World:
        loc: dict[str, tuple[str, str]] = {}
        for obj, holder in home.holders.items():
            loc[obj] = ("in" if "container" in CLASSES[holder].props else "on", holder)
        return cls(home=home, location=loc, states={k: set(v) for k, v in home.states.items()}, room=start_room)

    def copy(self) -> World:
        """An independent copy (the home is immutable and shared; planners copy worlds often)."""
        return World(home=self.home, location=dict(self.location), states={k: set(v) for k, v in self.states.items()},
                     room=self.room, near=self.near, holding=list(self.holding), posture=self.posture,
                     events=set(self.events), filled_with=dict(self.filled_with), known=self.known)

    # -- queries -------------------------------------------------------------------------------
    def exists(self, obj: str) -> bool:
        return obj in ROOMS or (obj in CLASSES and self.location.get(obj, ("", ""))[0] != "gone")

    def room_of(self, obj: str) -> str:
        """The room an object is in (a held object: the agent's room)."""
        if obj in self.home.rooms:
            return self.home.rooms[obj]
        rel, where = self.location[obj]
        if rel == "hand":
            return self.room
        if rel == "floor":
            return where
        return self.room_of(where)

    def holder(self, obj: str) -> str | None:
        """The furniture an object is in or on (None: held, on the floor, furniture)."""
        if obj in self.home.rooms:
            return None
        rel, where = self.location[obj]
        return where if rel in ("in", "on") else None

    def hidden(self, obj: str) -> str | None:
        """The closed container hiding ``obj``, if any."""
        h = self.holder(obj)
        if h is not None and self.location[obj][0] == "in" and "open" not in self.states[h]:
            return h
        return None

    def visible(self, obj: str) -> bool:
        return self.exists(obj) and obj not in ROOMS and self.room_of(obj) == self.room and self.hidden(obj) is None

    def close_to(self, obj: str) -> bool:
        """Whether the agent can reach ``obj``: held, walked to, or in/on what it walked to."""
        return obj in self.holding or (self.near is not None and (self.near == obj or self.holder(obj) == self.near)
                                       and self.room_of(obj) == self.room)

    def has(self, obj: str, prop: str) -> bool:
        return prop in CLASSES[obj].props

    # -- the rules -----------------------------------------------------------------------------
    def execute(self, action: Action | str) -> Feedback:
        """Apply ``action`` if its preconditions hold; else leave the world unchanged.

        :param action: an :class:`Action` or its text (parsed with :func:`parse_action`)
        :return: ``True`` feedback, or the first failed precondition in words with its kind
        """
        if isinstance(action, str):
            parsed = parse_action(action)
            if isinstance(parsed, Feedback):
                return parsed
            action = parsed
        verb = VERBS[VERB_INDEX[action.verb]]
        if len(action.args) != verb.arity:
            return Feedback(False, f"Wrong arguments for {verb.words[0]}. Robot agent should write "
                            f"{verb.template.format('<object>', '<object>')}.", "wrong_arguments")
        try:
            self._check_and_apply(action.verb, action.args)
        except Infeasible as e:
            return Feedback(False, e.message, e.kind)
        return OK

    def _visible(self, x: str) -> None:
        """Preconditions of seeing ``x``: it is in the agent's room and not inside a closed container."""
        if self.room_of(x) != self.room:
            raise Infeasible("not_in_room", f"{x} is not in the {self.room}. "
                             f"Robot agent should find the room with {x} first.")
        if (c := self.hidden(x)) is not None:
            raise Infeasible("inside_closed", f"{x} is inside the closed {c}. Robot agent should open {c} first.")

    def _reach(self, x: str) -> None:
        """Preconditions of touching ``x``: it exists here, is not shut away, and the agent walked to it."""
        self._object(x)
        self._visible(x)
        if not self.close_to(x):
            raise Infeasible("not_close", f"{x} is not close to robot agent. Robot agent should walk to {x} first.")

    def _object(self, x: str) -> None:
        if x in ROOMS:
            raise Infeasible("cannot", f"{x} is a room, not an object. Robot agent should name an object.")
        if not self.exists(x):
            raise Infeasible("unknown_object", f"There is no {x} anymore. Robot agent ate it.")

    def _held(self, x: str) -> None:
        self._object(x)
        if x not in self.holding:
            raise Infeasible("not_held", f"{x} not in hand. Robot agent should hold {x} first.")

    def _can(self, x: str, prop: str, what: str) -> None:
        if not self.has(x, prop):
            raise Infeasible("cannot", f"{x} cannot be {what}.")

    def _check_and_apply(self, verb: str, args: tuple[str, ...]) -> None:  # noqa: C901 - one rule per verb
        s = self.states
        if self.posture[0] != "standing" and verb not in SEATED_VERBS:
            raise Infeasible("posture", f"Robot agent is {self.posture[0]} on the {self.posture[1]}. "
                             "Robot agent should stand up first.")
        if verb == "walk":
            (x,) = args
            if x in ROOMS:
                self.room, self.near = x, None
                return
            self._object(x)
            self._visible(x)
            self.near = x
        elif verb == "grab":
            (x,) = args
            self._object(x)
            self._can(x, "grabbable", "grabbed")
            if x in self.holding:
                raise Infeasible("state", f"Robot agent is already holding {x}.")
            self._reach(x)
            if len(self.holding) >= 2:
                raise Infeasible("hands_full", f"Robot agent's hands are full. Robot agent should put down "
                                 f"{self.holding[0]} or {self.holding[1]} first.")
            self.holding.append(x)
            self.location[x] = ("hand", "")
        elif verb == "drop":
            (x,) = args
            self._held(x)
            self.holding.remove(x)
            self.location[x] = ("floor", self.room)
        elif verb in ("put_on", "put_in"):
            x, y = args
            if x == y:
                raise Infeasible("self_reference", f"Robot agent cannot put {x} {verb[4:]} itself.")
            self._held(x)
            self._object(y)
            self._can(y, "surface" if verb == "put_on" else "container", "put on" if verb == "put_on" else "put in")
            self._reach(y)
            if verb == "put_in" and "open" not in s[y]:
                raise Infeasible("state", f"{y} is closed. Robot agent should open {y} first.")
            self.holding.remove(x)
            self.location[x] = (verb[4:], y)
        elif verb in ("open", "close"):
            (x,) = args
            self._object(x)
            self._can(x, "openable", "opened" if verb == "open" else "closed")
            self._reach(x)
            if verb == "open":
                if "open" in s[x]:
                    raise Infeasible("state", f"{x} is already open.")
                if "on" in s[x]:
                    raise Infeasible("state", f"{x} is on. Robot agent should switch off {x} first.")
                s[x].add("open")
            else:
                if "open" not in s[x]:
                    raise Infeasible("state", f"{x} is already closed.")
                s[x].discard("open")
        elif verb in ("switch_on", "switch_off"):
            (x,) = args
            self._object(x)
            self._can(x, "switch", "switched on" if verb == "switch_on" else "switched off")
            self._reach(x)
            if verb == "switch_off":
                if "on" not in s[x]:
                    raise Infeasible("state", f"{x} is already off.")
                s[x].discard("on")
                return
            if "on" in s[x]:
                raise Infeasible("state", f"{x} is already on.")
            if self.has(x, "plug") and "plugged" not in s[x]:
                raise Infeasible("state", f"{x} is unplugged. Robot agent should plug in {x} first.")
            if "open" in s[x]:
                raise Infeasible("state", f"{x} is open. Robot agent should close {x} first.")
            s[x].add("on")
            for obj, (rel, where) in self.location.items():  # appliances act on what is inside
                if rel == "in" and where == x:
                    if x == "microwave":
                        s[obj].add("hot")
                    elif x == "washingmachine":
                        s[obj].add("clean")
        elif verb in ("plug_in", "unplug"):
            (x,) = args
            self._object(x)
            self._can(x, "plug", "plugged in" if verb == "plug_in" else "unplugged")
            self._reach(x)
            if verb == "plug_in":
                if "plugged" in s[x]:
                    raise Infeasible("state", f"{x} is already plugged in.")
                s[x].add("plugged")
            else:
                if "plugged" not in s[x]:
                    raise Infeasible("state", f"{x} is already unplugged.")
                s[x] -= {"plugged", "on"}
        elif verb == "wash":
            (x,) = args
            self._held(x)
            self._can(x, "washable", "washed")
            sink = "sink"
            if self.room_of(sink) != self.room or self.near != sink:
                raise Infeasible("not_close", "sink is not close to robot agent. Robot agent should walk to sink first.")
            if "on" not in s[sink]:
                raise Infeasible("state", "sink is off. Robot agent should switch on sink first.")
            s[x].add("clean")
        elif verb == "wipe":
            (x,) = args
            self._object(x)
            self._can(x, "wipeable", "wiped")
            self._reach(x)
            if "rag" not in self.holding:
                raise Infeasible("missing_tool", "rag not in hand. Robot agent should hold rag first.")
            s[x].add("clean")
        elif verb == "cut":
            (x,) = args
            self._object(x)
            self._can(x, "cuttable", "cut")
            self._reach(x)
            if "knife" not in self.holding:
                raise Infeasible("missing_tool", "knife not in hand. Robot agent should hold knife first.")
            if "sliced" in s[x]:
                raise Infeasible("state", f"{x} is already sliced.")
            s[x].add("sliced")
        elif verb == "eat":
            (x,) = args
            self._object(x)
            self._can(x, "edible", "eaten")
            self._held(x)
            self.holding.remove(x)
            self.location[x] = ("gone", "")
            self.events.add(("eaten", x))
        elif verb == "drink":
            (x,) = args
            self._object(x)
            self._can(x, "fillable", "drunk from")
            self._held(x)
            if x not in self.filled_with:
                raise Infeasible("state", f"{x} is empty. Robot agent should pour something into {x} first.")
            self.events.add(("drank", self.filled_with.pop(x)))
        elif verb == "pour":
            x, y = args
            if x == y:
                raise Infeasible("self_reference", f"Robot agent cannot pour {x} into itself.")
            self._held(x)
            self._can(x, "pourable", "poured")
            self._object(y)
            self._can(y, "fillable", "filled")
            self._reach(y)
            if y in self.filled_with:
                raise Infeasible("state", f"{y} is already full.")
            self.filled_with[y] = x
        elif verb in ("sit", "lie"):
            (x,) = args
            self._object(x)
            self._can(x, "sittable" if verb == "sit" else "lieable", "sat on" if verb == "sit" else "lain on")
            self._reach(x)
            self.posture = ("sitting" if verb == "sit" else "lying", x)
        elif verb == "stand_up":
            if self.posture[0] == "standing":
                raise Infeasible("state", "Robot agent is already standing.")
            self.posture = ("standing", "")
        elif verb in ("look_at", "watch"):
            (x,) = args
            self._object(x)
            if verb == "watch":
                self._can(x, "watchable", "watched")
            self._visible(x)
            if verb == "watch":
                if "on" not in s[x]:
                    raise Infeasible("state", f"{x} is off. Robot agent should switch on {x} first.")
                self.events.add(("watched", x))
        elif verb == "read":
            (x,) = args
            self._object(x)
            self._can(x, "readable", "read")
            self._held(x)
            self.events.add(("read", x))
        elif verb == "type":
            (x,) = args
            self._object(x)
            self._can(x, "typeable", "typed on")
            self._reach(x)
            if "on" not in s[x]:
                raise Infeasible("state", f"{x} is off. Robot agent should switch on {x} first.")
            self.events.add(("typed", x))
        elif verb == "touch":
            (x,) = args
            self._reach(x)
        else:  # pragma: no cover - VERBS and this method are kept in step by the tests
            raise AssertionError(verb)

    # -- observations --------------------------------------------------------------------------
    def describe_object(self, obj: str) -> str:
        """``apple (on counter, clean)``: an object with its relation and states, as the agent sees it."""
        s = self.states[obj]
        bits: list[str] = []
        if (h := self.holder(obj)) is not None:
            bits.append(f"{self.location[obj][0]} {h}")
        elif self.location.get(obj, ("", ""))[0] == "floor":
            bits.append("on floor")
        if self.has(obj, "openable"):
            bits.append("open" if "open" in s else "closed")
        if self.has(obj, "switch"):
            bits.append("on" if "on" in s else "off")
        if self.has(obj, "plug"):
            bits.append("plugged" if "plugged" in s else "unplugged")
        if self.has(obj, "washable") or self.has(obj, "wipeable"):
            bits.append("clean" if "clean" in s else "dirty")
        for flag in ("hot", "sliced"):
            if flag in s:
                bits.append(flag)
        if obj in self.filled_with:
            bits.append(f"full of {self.filled_with[obj]}")
        return f"{obj} ({', '.join(bits)})" if bits else obj

    def observation_text(self) -> str:
        """What the agent observes, in words: room, posture, what it is close to and holds, and every
        visible object in the room with its relation and states (objects in closed containers are hidden)."""
        seen = [o for o in OBJECTS if self.visible(o) and o not in self.holding]
        held = ", ".join(self.describe_object(o) for o in self.holding) or "nothing"
        posture = f" You are {self.posture[0]} on the {self.posture[1]}." if self.posture[0] != "standing" else ""
        near = f" You are close to the {self.near}." if self.near else ""
        text = (f"You are in the {self.room}.{posture}{near} You hold {held}. "
                f"You see {', '.join(self.describe_object(o) for o in seen) or 'nothing'}.")
        # where the task's objects are: their room, and for one in or on furniture that furniture too, so a
        # task object shut in a closed cabinet can be found without search (VirtualHome agents get the scene
        # graph; the expert planner knows it too, and a plan step the agent cannot infer is noise to learn)
        rooms = [f"{o} is {self._where(o)}" for o in self.known if self.exists(o) and o not in self.holding]
        return text + (f" You know {', '.join(rooms)}." if rooms else "")

    def _where(self, obj: str) -> str:
        h = self.holder(obj)
        return f"in {self.room_of(obj)}" if h is None else f"{self.location[obj][0]} {h} in {self.room_of(obj)}"


# -- vocabulary ------------------------------------------------------------------------------------
#: Words of the feedback and observation templates above (besides verbs, entities and states); a test
#: runs episodes and checks that every text the env emits uses only :func:`vocabulary` words.
_TEMPLATE_WORDS = """
true error robot agent should hold first not in hand is inside the closed open close to walk find room with
a an object name there no anymore ate it cannot be grabbed put on down or hands are full already holding
itself opened closed switch switched off plugged plug unplugged washed wiped cut eaten drunk from poured
filled sat lain sitting lying stand up standing read typed watched empty pour something into full of
unknown action use known step give wrong arguments for write you see nothing hot sliced clean dirty floor
and then heat microwave turn wash wipe eat watch sit this home are know where things
"""


def vocabulary() -> list[str]:
    """Every word the household's texts use (tasks, steps, observations, feedback), sorted: the
    vocabulary a language agent's tokenizer is built from. Texts are lowercased and split into words
    and the punctuation ``. , ( )``."""
    words = set(_TEMPLATE_WORDS.split()) | set(ENTITIES)
    for v in VERBS:
        words |= set(v.words)
    return sorted(words)
