"""Where MetaWorld's scripted experts hold the hand when they start moving the object, measured.

A reward that gates a stage on contact ("push only once the hand is at the pressing pose") needs the
pose at which the hand actually moves the object, in the card's own fields. That pose differs per task
(the hand is 6 cm below the button's front face when it presses it, 9 cm below the window handle when
it slides the window), and a guess ("slightly below") writes gates that never fire. This module
measures it from the scripted experts (``metaworld.policies``, through
:meth:`rewardlab.sims.metaworld.MetaWorldSimulator.expert`) and keeps the cards' statements of it in
step with the measurement.

**Contact onset** is the first step of the push that leads to success: the last run of steps in which
the card's ``obj1.position`` moves by at least :data:`MOVE_EPS` per step before the success step (pauses
of up to :data:`GAP` steps do not end it), provided a robot geom touches a *movable* body of the task (a
body outside the robot that hangs on a joint: the button, the door leaf, the puck) during the run
(:func:`push_phase`). This excludes objects that drift by themselves (MetaWorld's drawers slide about
0.3 mm per step untouched), the first steps after a reset, whose observation still shows the object's
default pose (door-close and window-close jump by 0.2-0.5 m without contact), and an early brush against
the object that the expert then leaves (handle-press). Contacts are read at the end of each step, so the
run as a whole, not every step, must show one. At the onset it records, in card fields,

- ``robot.ee_position - obj1.position`` (m): the contact offset stated in each card's tips;
- ``robot.gripper_openness``: open (1.0) or closed (about 0.3) when the expert pushes;
- the fingertip centre (MetaWorld's ``tcp_center``, between the two finger pads) minus
  ``robot.ee_position`` (m): the ``ee_position`` docs state its z.

It also records ``goal_position - obj1.position`` after the first step, the travel that the tips state
in words ("the button travels about 9 cm along +y"); that column is printed for a reader to compare.

Per task the figures are medians over seeds whose expert episode succeeded, with the largest
deviation of any seed from the median (the spread). Run::

    python -m rewardlab.sims.metaworld_contacts              # measure every carded task (10 seeds)
    python -m rewardlab.sims.metaworld_contacts --check      # exit 1 if a card states other numbers
    python -m rewardlab.sims.metaworld_contacts --write      # rewrite the cards' contact tips

``tests/test_prompts_truth.py`` measures two seeds and checks the shipped cards against them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard, list_cards, load_card
from rewardlab.errors import UserError
from rewardlab.sims.base import get_simulator, make_env

#: Smallest motion of ``obj1.position`` in one step (m) that counts as the object starting to move.
MOVE_EPS = 1e-3
#: Pauses (steps without motion) that do not end a push (the expert's hand re-grips, a hinge sticks).
GAP = 3
#: Seeds the shipped cards' numbers come from.
DEFAULT_SEEDS: tuple[int, ...] = tuple(range(10))
#: The hand, object and goal columns of MetaWorld v3's observation (every task; the cards map
#: ``robot.ee_position``, ``robot.gripper_openness`` and ``obj1.position`` to them).
HAND, OPENNESS, OBJECT, GOAL = slice(0, 3), 3, slice(4, 7), slice(36, 39)

#: The sentence a card's contact tip opens with; :func:`parse_contact_tip` finds it by this.
TIP_PREFIX = "Contact, measured from the scripted expert"


Triple = tuple[float, float, float]


@dataclass(frozen=True)
class ContactMeasurement:
    """A task's contact pose, measured from its scripted expert (see the module docstring).

    :param card_id: the card measured
    :param seeds: the seeds run (each seeds the env's goal cycle: a different object placement)
    :param successes: episodes in which the expert succeeded; only these count
    :param onset_step: median step of the contact onset (the first step of the push phase)
    :param offset: median ``robot.ee_position - obj1.position`` at the onset, (3,) in m
    :param spread: largest ``|offset_seed - offset|`` over the counted seeds, per axis, (3,) in m
    :param low: per axis, the smallest ``ee_position - obj1.position`` at any push step of any counted
        seed, (3,) in m
    :param high: the largest, likewise
    :param openness: median ``robot.gripper_openness`` at the onset (1 open, about 0.3 closed)
    :param fingertip: median fingertip centre minus ``robot.ee_position`` at the onset, (3,) in m
    :param parts: the robot parts (:func:`robot_part`) seen touching the object during the push
        phases, most often seen first
    :param start_to_goal: median ``goal_position - obj1.position`` after the first step, (3,) in m: the
        travel the cards' tips state in words ("the button travels about 9 cm along +y")
    :param onsets: each counted seed's ``ee_position - obj1.position`` at its onset, (3,) in m
    """

    card_id: str
    seeds: tuple[int, ...]
    successes: int
    onset_step: int
    offset: Triple
    spread: Triple
    low: Triple
    high: Triple
    openness: float
    fingertip: Triple
    parts: tuple[str, ...] = ()
    start_to_goal: Triple = (float("nan"), float("nan"), float("nan"))
    onsets: tuple[Triple, ...] = ()

    def gate_open(self, centre: Sequence[float], radius: float = 0.02) -> int:
        """How many counted seeds a contact gate ``max |ee - obj1 - centre| < radius`` lets through at
        the onset (``--gate``: does a gate written from some text fire for the expert?)."""
        return int(sum(np.max(np.abs(np.subtract(o, centre))) < radius for o in self.onsets))


@dataclass(frozen=True)
class _Episode:
    """One expert episode, step by step (steps ``0 .. len - 1``, each the state after the action)."""

    moved: np.ndarray  # (T,) bool: obj1 moved by at least MOVE_EPS during the step
    touching: np.ndarray  # (T,) bool: a robot geom touches a movable body at the end of the step
    parts: list[frozenset[str]]  # per step, the robot parts (:func:`robot_part`) in those contacts
    offset: np.ndarray  # (T, 3) ee_position - obj1.position
    openness: np.ndarray  # (T,)
    fingertip: np.ndarray  # (T, 3) fingertip centre - ee_position
    success_step: int | None
    start_to_goal: np.ndarray  # (3,) goal_position - obj1.position after the first step


def _movable_geoms(model: Any) -> tuple[set[int], set[int]]:
    """The geoms of the robot (the kinematic tree holding the ``hand`` body) and those of the task's
    movable bodies (outside the robot, mocap excluded, below a body with a joint)."""
    robot_root = int(model.body_rootid[model.body("hand").id])
    movable_bodies = set()
    for body in range(1, model.nbody):
        if int(model.body_rootid[body]) == robot_root or model.body_mocapid[body] >= 0:
            continue
        b = body
        while b != 0:
            if model.body_jntnum[b] > 0:
                movable_bodies.add(body)
                break
            b = int(model.body_parentid[b])
    robot = {g for g in range(model.ngeom) if int(model.body_rootid[model.geom_bodyid[g]]) == robot_root}
    movable = {g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in movable_bodies}
    return robot, movable


def robot_part(body_name: str) -> str:
    """A robot body as the tips name it: ``fingers`` (claws and pads) or ``wrist`` (the hand body that
    ``ee_position`` tracks, the flange above it, the arm)."""
    return "fingers" if body_name.endswith(("claw", "pad")) else "wrist"


def _touching(model: Any, data: Any, robot: set[int], movable: set[int]) -> frozenset[str]:
    """The robot parts touching a movable body at the end of the current step (empty: none)."""
    parts = set()
    for c in data.contact[: data.ncon]:
        for mine, other in ((c.geom1, c.geom2), (c.geom2, c.geom1)):
            if mine in robot and other in movable:
                parts.add(robot_part(model.body(int(model.geom_bodyid[mine])).name))
    return frozenset(parts)


def run_expert(card: EnvCard, seed: int) -> _Episode:
    """Run the card's scripted expert for one episode (env seeded with ``seed``) until it succeeds or
    the episode ends, recording what :func:`push_phase` needs.

    :raises ValueError: the card is not a MetaWorld card with a scripted expert
    """
    if card.simulator != "metaworld":
        raise ValueError(f"{card.id} is not a MetaWorld card")
    expert = get_simulator(card.simulator).expert(card)
    if expert is None:
        raise ValueError(f"{card.id} has no scripted expert")
    env = make_env(card, seed=seed)
    moved, parts, offset, openness, fingertip = [], [], [], [], []
    success_step = None
    start_to_goal = np.full(3, np.nan)
    try:
        obs, _ = env.reset(seed=seed)
        base: Any = env.unwrapped
        robot, movable = _movable_geoms(base.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the experts warn that their gains exceed the action bounds
            for t in range(card.episode_steps):
                before = obs[OBJECT].copy()
                obs, _, terminated, truncated, info = env.step(np.clip(expert(obs, t), -1.0, 1.0))
                moved.append(np.linalg.norm(obs[OBJECT] - before) >= MOVE_EPS)
                parts.append(_touching(base.model, base.data, robot, movable))
                offset.append(obs[HAND] - obs[OBJECT])
                openness.append(float(obs[OPENNESS]))
                fingertip.append(np.asarray(base.tcp_center) - obs[HAND])
                if t == 0:  # the reset's own observation may still show the object's default pose
                    start_to_goal = obs[GOAL] - obs[OBJECT]
                if info.get("success"):
                    success_step = t
                    break
                if terminated or truncated:
                    break
    finally:
        env.close()
    return _Episode(np.array(moved), np.array([bool(p) for p in parts]), parts, np.array(offset),
                    np.array(openness), np.array(fingertip), success_step, start_to_goal)


def push_phase(ep: _Episode, gap: int = GAP) -> np.ndarray | None:
    """The steps at which the expert moves obj1 on its way to success: the moving steps of the last run
    of motion before the success step (pauses of at most ``gap`` steps do not end a run), provided the
    robot touches a movable body during the run. None when the episode failed or no such run exists.

    Contacts are read at the end of each step (MuJoCo's last substep), so a hand that hooks a handle
    for a few substeps can move it without a contact being seen at that step; the run as a whole must
    show one.
    """
    if ep.success_step is None:
        return None
    moving = np.flatnonzero(ep.moved[: ep.success_step + 1])
    if moving.size == 0 or ep.success_step - moving[-1] > gap:
        return None
    first = len(moving) - 1
    while first > 0 and moving[first] - moving[first - 1] - 1 <= gap:
        first -= 1
    steps = moving[first:]
    if not ep.touching[steps[0]: ep.success_step + 1].any():
        return None  # motion without contact: drift, or the reset's stale first observation
    return steps


def _triple(a: np.ndarray) -> Triple:
    return (float(a[0]), float(a[1]), float(a[2]))


def measure_contact(card: EnvCard, seeds: Sequence[int] = DEFAULT_SEEDS) -> ContactMeasurement | None:
    """The card's contact pose over ``seeds`` (see :class:`ContactMeasurement`); None when the expert
    succeeds without moving ``obj1`` by touching it (reach-v3, whose puck is a distractor).

    :raises ValueError: not a MetaWorld card with an expert, or the expert succeeded on no seed
    """
    onsets, pushes, openness, fingertips, travel = [], [], [], [], []
    parts: Counter[str] = Counter()
    successes = 0
    for seed in seeds:
        ep = run_expert(card, seed)
        successes += int(ep.success_step is not None)
        steps = push_phase(ep)
        travel.append(ep.start_to_goal)
        if steps is not None:
            onsets.append((int(steps[0]), ep.offset[steps[0]]))
            pushes.append(ep.offset[steps])
            openness.append(ep.openness[steps[0]])
            fingertips.append(ep.fingertip[steps[0]])
            parts.update(p for t in range(int(steps[0]), int(steps[-1]) + 1) for p in ep.parts[t])
    if not successes:
        raise ValueError(f"{card.id}: the scripted expert succeeded on none of the seeds {list(seeds)}")
    if not onsets:
        return None
    offsets = np.array([o for _, o in onsets])
    median = np.median(offsets, axis=0)
    every_push = np.concatenate(pushes)
    return ContactMeasurement(
        card_id=card.id, seeds=tuple(int(s) for s in seeds), successes=successes,
        onset_step=int(np.median([t for t, _ in onsets])),
        offset=_triple(median), spread=_triple(np.abs(offsets - median).max(axis=0)),
        low=_triple(every_push.min(axis=0)), high=_triple(every_push.max(axis=0)),
        openness=float(np.median(openness)), fingertip=_triple(np.median(np.array(fingertips), axis=0)),
        parts=tuple(p for p, _ in parts.most_common()),
        start_to_goal=_triple(np.median(np.array(travel), axis=0)),
        onsets=tuple(_triple(o) for o in offsets),
    )


# -- the card's statement ----------------------------------------------------------------------------
def _vec(v: Triple) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"


_PART_WORDS = {"fingers": "its fingers", "wrist": "its wrist (the hand body above the fingers)"}


def contact_tip(m: ContactMeasurement) -> str:
    """The tip a card carries for a measurement (parsed back by :func:`parse_contact_tip`)."""
    fz = m.fingertip[2]
    state = "open" if m.openness > 0.6 else "closed"
    ranges = ", ".join(f"{axis} [{lo:.3f}, {hi:.3f}]" for axis, lo, hi in zip("xyz", m.low, m.high))
    parts = " and ".join(_PART_WORDS[p] for p in m.parts) or "the hand"
    return (f"{TIP_PREFIX} ({len(m.seeds)} seeds): when obj1 starts to move, robot.ee_position - obj1.position = "
            f"{_vec(m.offset)} m (every seed within {max(m.spread):.3f} m), robot.gripper_openness "
            f"{m.openness:.2f} ({state}); while the expert moves obj1 the difference stays within {ranges} m, "
            f"and it touches the object with {parts}. So the hand works {_axis_words(m.offset)} "
            f"obj1.position: centre a contact gate on robot.ee_position there, not on obj1.position. "
            f"The fingertip centre is {abs(fz):.3f} m {'below' if fz < 0 else 'above'} robot.ee_position.")


def _axis_words(offset: Triple, ignore: float = 0.01) -> str:
    """``(0, -0.05, -0.062)`` -> "0.050 m in -y of and 0.062 m below" (axes under 1 cm left out)."""
    words = []
    for value, (neg, pos) in zip(offset, (("in -x of", "in +x of"), ("in -y of", "in +y of"), ("below", "above"))):
        if abs(value) >= ignore:
            words.append(f"{abs(value):.3f} m {neg if value < 0 else pos}")
    if not words:
        return "at"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


_NUM = r"(-?\d+\.\d+)"
_TIP_RE = re.compile(
    re.escape(TIP_PREFIX) + r" \((?P<seeds>\d+) seeds\): when obj1 starts to move, robot\.ee_position - "
    r"obj1\.position = \[(?P<offset>[^\]]+)\] m \(every seed within (?P<spread>\d+\.\d+) m\), "
    r"robot\.gripper_openness (?P<openness>\d+\.\d+) \(\w+\); while the expert moves obj1 the difference "
    rf"stays within x \[{_NUM}, {_NUM}\], y \[{_NUM}, {_NUM}\], z \[{_NUM}, {_NUM}\] m")


@dataclass(frozen=True)
class StatedContact:
    """A card's contact tip, parsed (the fields of :class:`ContactMeasurement` it states)."""

    seeds: int
    offset: Triple
    spread: float
    openness: float
    low: Triple
    high: Triple


def parse_contact_tip(card: EnvCard) -> StatedContact | None:
    """The contact pose the card's tips state, or None when no tip states one."""
    for tip in card.tips:
        m = _TIP_RE.search(tip)
        if m:
            x, y, z = (float(v) for v in m.group("offset").split(","))
            r = [float(v) for v in m.groups()[4:]]
            return StatedContact(int(m.group("seeds")), (x, y, z), float(m.group("spread")),
                                 float(m.group("openness")), (r[0], r[2], r[4]), (r[1], r[3], r[5]))
    return None


#: Rounding slack (m) on stated numbers (three decimals) when comparing them with a measurement.
SLACK = 0.002


def disagreements(card: EnvCard, m: ContactMeasurement | None) -> list[str]:
    """How the card's statement differs from a measurement (empty: they agree).

    A measurement on fewer seeds (the test's) agrees with a card measured on more when each onset axis
    is within the card's stated spread (at least 5 mm) plus :data:`SLACK`, the openness within 0.1,
    and its push ranges inside the card's (plus :data:`SLACK`); with the card's seeds the numbers
    must match to the rounding. A task without contact must state none.
    """
    stated = parse_contact_tip(card)
    if m is None:
        return [f"{card.id}: the card states a contact offset, but the expert never moves obj1 by contact"] \
            if stated else []
    if stated is None:
        return [f"{card.id}: no contact tip; measured {contact_tip(m)!r}"]
    tol = max(stated.spread, 0.005) + SLACK
    problems = []
    for axis, s, v in zip("xyz", stated.offset, m.offset):
        if abs(s - v) > tol:
            problems.append(f"{card.id}: onset offset {axis} is {s:.3f} m in the card, {v:.3f} m measured "
                            f"(tolerance {tol:.3f} m)")
    for axis, lo, hi, mlo, mhi in zip("xyz", stated.low, stated.high, m.low, m.high):
        if mlo < lo - SLACK or mhi > hi + SLACK:
            problems.append(f"{card.id}: push range {axis} is [{lo:.3f}, {hi:.3f}] m in the card, "
                            f"[{mlo:.3f}, {mhi:.3f}] m measured")
    if abs(stated.openness - m.openness) > 0.1:
        problems.append(f"{card.id}: gripper_openness {stated.openness:.2f} in the card, {m.openness:.2f} measured")
    return problems


def write_contact_tip(card: EnvCard, m: ContactMeasurement | None) -> bool:
    """Replace (or append) the contact tip in the card's YAML file, keeping everything else as written.

    :return: whether the file changed
    """
    assert card.path is not None, "a card loaded from a file"
    text = card.path.read_text()
    lines = text.splitlines(keepends=True)
    old = [i for i, line in enumerate(lines) if TIP_PREFIX in line]
    new_line = None if m is None else f"  - {json.dumps(contact_tip(m))}\n"
    if old:
        if new_line is None:
            del lines[old[0]]
        else:
            lines[old[0]] = new_line
    elif new_line is not None:
        tips = next(i for i, line in enumerate(lines) if line.startswith("tips:"))
        end = tips + 1
        while end < len(lines) and lines[end].startswith("  - "):
            end += 1
        lines.insert(end, new_line)
    new = "".join(lines)
    if new != text:
        card.path.write_text(new)
        load_card(card.path)  # still a valid card
        return True
    return False


def metaworld_cards() -> list[EnvCard]:
    """Every shipped MetaWorld card whose task has a scripted expert."""
    from metaworld.policies import ENV_POLICY_MAP

    return [c for c in list_cards() if c.simulator == "metaworld" and c.env_id in ENV_POLICY_MAP]


def main(argv: Sequence[str] | None = None) -> int:
    from rewardlab.runtime import limit_threads

    limit_threads(torch_too=False)
    parser = argparse.ArgumentParser(prog="python -m rewardlab.sims.metaworld_contacts",
                                     description="Measure the MetaWorld experts' contact offsets.")
    parser.add_argument("cards", nargs="*", help="card ids (default: every MetaWorld card with an expert)")
    parser.add_argument("--seeds", type=int, default=len(DEFAULT_SEEDS), help="seeds 0..N-1 (default 10)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a card states other numbers")
    parser.add_argument("--write", action="store_true", help="rewrite the cards' contact tips")
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    parser.add_argument("--gate", metavar="X,Y,Z", help="also count, per task, the onsets a contact gate "
                        "centred at ee - obj1 = X,Y,Z (2 cm in each axis) lets through")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    gate = None
    if args.gate:
        try:
            gate = [float(v) for v in args.gate.split(",")]
        except ValueError:
            gate = []
        if len(gate) != 3:
            parser.error(f"--gate takes three numbers X,Y,Z (m), not {args.gate!r}")
    try:
        cards = [load_card(c) for c in args.cards] if args.cards else metaworld_cards()
    except UserError as e:
        parser.error(str(e))
    seeds = tuple(range(args.seeds))
    results: dict[str, Any] = {}
    problems: list[str] = []
    print(f"{'task':22} {'ok':>5} {'step':>4}  {'ee - obj1 at onset (m)':>24} {'spread':>6} {'open':>5}  "
          f"{'push range low':>24} {'push range high':>24}  tip z  {'goal - obj1 at start':>24}")
    for card in cards:
        try:
            m = measure_contact(card, seeds)
        except ValueError as e:
            parser.error(str(e))
        results[card.id] = None if m is None else asdict(m)
        if m is None:
            print(f"{card.task:22} {'-':>5} {'-':>4}  {'no contact with obj1':>24}")
        else:
            print(f"{card.task:22} {m.successes:>2}/{len(seeds):<2} {m.onset_step:>4}  {_vec(m.offset):>24} "
                  f"{max(m.spread):6.3f} {m.openness:5.2f}  {_vec(m.low):>24} {_vec(m.high):>24}  "
                  f"{m.fingertip[2]:+.3f}  {_vec(m.start_to_goal):>24}"
                  + (f"  gate open {m.gate_open(gate)}/{len(m.onsets)}" if gate is not None else ""))
        stated = parse_contact_tip(card)
        if m is not None and stated is not None:  # the card's own numbers as a gate (as the test builds it)
            print(f"{'':22} a gate from the card's numbers opens at the onset for "
                  f"{m.gate_open(stated.offset, max(0.02, stated.spread + SLACK))}/{len(m.onsets)} seeds")
        if args.write:
            if write_contact_tip(card, m):
                print(f"  wrote {card.path}")
        elif args.check:
            problems += disagreements(card, m)
    if args.json:
        args.json.write_text(json.dumps({"seeds": list(seeds), "move_eps_m": MOVE_EPS, "gap_steps": GAP,
                                         "tasks": results}, indent=1) + "\n")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
