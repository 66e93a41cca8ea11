"""The expert planner: a plan for any household task from any reachable world state.

It plans by acting on a copy of the world: each skill (``hold``, ``go_to``, ``place_in``, ...) reads
the current state, emits the steps it needs and executes them on the copy, so a plan is executable by
construction and every emitted step is checked against the world's own rules. Because it starts from
whatever state it is given, it also gives E2CL's teacher-free corrections: the first step of a plan
from the state the agent's error left (``shared/research/reward_design_algorithms.md`` §6; the paper
asks GPT-4o for these, a labelled deviation).
"""

from __future__ import annotations

from rewardlab.household.tasks import Subtask, Task
from rewardlab.household.world import Action, World


class Unreachable(Exception):
    """The goal cannot be reached from this state (the agent ate an object the task needs)."""


class _Plan:
    """Steps emitted on a private copy of the world."""

    def __init__(self, world: World):
        self.w = world.copy()
        self.steps: list[Action] = []

    def do(self, verb: str, *args: str) -> None:
        action = Action(verb, tuple(args))
        fb = self.w.execute(action)
        if not fb.executable:  # a planner step the world refuses is a planner bug, never silently skipped
            raise AssertionError(f"expert step {action.text!r} failed: {fb.message}")
        self.steps.append(action)

    # -- skills ------------------------------------------------------------------------------
    def stand(self) -> None:
        if self.w.posture[0] != "standing":
            self.do("stand_up")

    def need(self, obj: str) -> None:
        if not self.w.exists(obj):
            raise Unreachable(f"{obj} was eaten")

    def go_to(self, obj: str) -> None:
        """Be close to ``obj``: stand, walk to its room, open what hides it, walk to it."""
        self.need(obj)
        self.stand()
        if obj in self.w.holding or self.w.close_to(obj) and self.w.hidden(obj) is None:
            return
        if self.w.room_of(obj) != self.w.room:
            self.do("walk", self.w.room_of(obj))
        if (c := self.w.hidden(obj)) is not None:
            self.go_to(c)
            self.open(c)
        if not self.w.close_to(obj):
            self.do("walk", obj)

    def open(self, container: str) -> None:
        if "open" in self.w.states[container]:
            return
        self.go_to(container)
        if "on" in self.w.states[container]:
            self.do("switch_off", container)
        self.do("open", container)

    def free_hand(self, keep: tuple[str, ...]) -> None:
        if len(self.w.holding) >= 2:
            spare = next(o for o in self.w.holding if o not in keep)
            self.do("drop", spare)

    def hold(self, obj: str, keep: tuple[str, ...] = ()) -> None:
        self.need(obj)
        if obj in self.w.holding:
            return
        self.go_to(obj)
        self.free_hand(keep + (obj,))
        self.do("grab", obj)

    def place(self, obj: str, rel: str, target: str) -> None:
        self.hold(obj)
        if rel == "in":
            self.open(target)
        self.go_to(target)
        self.do("put_in" if rel == "in" else "put_on", obj, target)

    def switch_on(self, device: str) -> None:
        self.go_to(device)
        s = self.w.states[device]
        if "on" in s:
            return
        if self.w.has(device, "plug") and "plugged" not in s:
            self.do("plug_in", device)
        if "open" in s:
            self.do("close", device)
        self.do("switch_on", device)

    # -- one subtask --------------------------------------------------------------------------
    def achieve(self, part: Subtask) -> None:  # noqa: C901 - one recipe per template
        if part.holds(self.w):
            return
        t, a = part.template, part.args
        if t == "put_in":
            self.place(a[0], "in", a[1])
        elif t == "put_on":
            self.place(a[0], "on", a[1])
        elif t == "switch_on":
            self.switch_on(a[0])
        elif t == "switch_off":
            self.go_to(a[0])
            self.do("switch_off", a[0])
        elif t == "wash":
            self.hold(a[0])
            self.go_to("sink")
            if "on" not in self.w.states["sink"]:
                self.do("switch_on", "sink")
            self.do("wash", a[0])
        elif t == "heat":
            if self.w.location[a[0]] != ("in", "microwave"):
                self.place(a[0], "in", "microwave")
            self.go_to("microwave")
            self.switch_on("microwave")
        elif t == "pour":
            self.hold(a[0])
            if "cup" in self.w.filled_with:  # the agent filled it with something else: drink it first
                self.hold("cup", keep=(a[0],))
                self.do("drink", "cup")
            self.go_to("cup")
            self.do("pour", a[0], "cup")
        elif t == "cut":
            self.hold("knife")
            self.go_to(a[0])
            self.do("cut", a[0])
        elif t == "watch":
            self.switch_on(a[0])
            self.do("watch", a[0])
        elif t == "read":
            self.hold(a[0])
            self.do("read", a[0])
        elif t == "wipe":
            self.hold("rag")
            self.go_to(a[0])
            self.do("wipe", a[0])
        elif t == "sit":
            self.go_to(a[0])
            self.do("sit", a[0])
        elif t == "eat":
            self.hold(a[0])
            self.do("eat", a[0])
        else:  # pragma: no cover
            raise AssertionError(t)


def expert_plan(world: World, task: Task, max_passes: int = 3) -> list[Action]:
    """The expert's steps from ``world`` until ``task`` is satisfied (``[]`` when it already is).

    Parts are achieved in order; a part undone by a later one (not possible for the generated tasks,
    whose parts touch disjoint objects) is redone on the next pass.

    :raises Unreachable: the task cannot be completed from this state
    """
    plan = _Plan(world)
    for _ in range(max_passes):
        if task.satisfied(plan.w):
            return plan.steps
        for part in task.parts:
            plan.achieve(part)
    if not task.satisfied(plan.w):
        raise AssertionError(f"the expert did not solve {task.instruction!r}")
    return plan.steps


def next_expert_step(world: World, task: Task) -> Action | None:
    """The expert's next step from ``world`` (None: satisfied, or unreachable)."""
    try:
        steps = expert_plan(world, task)
    except Unreachable:
        return None
    return steps[0] if steps else None
