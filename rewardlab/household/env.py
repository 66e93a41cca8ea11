"""``HouseholdEnv``: the household world as a gymnasium environment (registered simulator ``household``).

Each episode draws a home and a task from its split (seeded), prepares the home so the task's goal does
not already hold, and ends with reward 1 as soon as the goal holds (``terminated``) or after
``max_steps`` steps (``truncated``). Actions are templated: a ``MultiDiscrete`` triple
``(verb, first argument, second argument)`` over :data:`~rewardlab.household.world.VERBS` and
:data:`~rewardlab.household.world.ENTITIES` (argument 0 is "none"), or the step in words
(``"put apple in fridge"``), which language agents use. Every step returns the world's feedback in
``info``: ``executable``, ``feedback`` (``True`` or ``Error, <reason>``), ``error_kind``.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rewardlab.errors import UserError
from rewardlab.household.planner import expert_plan, next_expert_step
from rewardlab.household.tasks import Task, check_split, parse_task, split_homes, split_tasks
from rewardlab.household.world import (
    ENTITIES,
    OBJECTS,
    ROOMS,
    VERB_INDEX,
    VERBS,
    Action,
    Feedback,
    World,
    generate_home,
    parse_action,
)

#: Characters of the text observations (gymnasium ``Text`` spaces check them).
CHARSET = string.ascii_letters + string.digits + " .,()'"
TEXT_LENGTH = 1200


class HouseholdEnv(gym.Env[dict[str, Any], Any]):
    """Procedurally generated homes with VirtualHome-like rules and natural-language feedback.

    Observation (``Dict``): ``text`` (what the agent sees, in words), ``task`` (the instruction),
    ``room`` (index into ``ROOMS``), ``near`` (0: nothing, else 1 + index into ``ENTITIES``),
    ``holding`` and ``visible`` (one flag per object of ``OBJECTS``).

    :param split: ``train`` (seen tasks in training homes), ``unseen_compositions`` (held-out template
        pairs in training homes) or ``unseen_homes`` (seen tasks in homes with unseen floor plans)
    :param max_steps: the episode is truncated after this many steps (E2CL caps inference at 25; the
        longest expert plan of a generated task is 17 steps, ``tests/test_household.py``)
    :param home: always use this home id (else drawn from the split at each reset)
    :param task: always use this task, by instruction (else drawn from the split)
    :param render_mode: ``ansi`` (``render()`` returns the text observation) or None
    :raises UserError: unknown split, unknown task, non-positive ``max_steps``
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, split: str = "train", max_steps: int = 30, home: int | None = None,
                 task: str | None = None, render_mode: str | None = None):
        check_split(split)
        if max_steps <= 0:
            raise UserError(f"max_steps must be positive (got {max_steps})")
        if render_mode not in (None, "ansi"):
            raise UserError(f"household renders only as 'ansi' text (got {render_mode!r})")
        self.split, self.max_steps, self.render_mode = split, max_steps, render_mode
        self.fixed_home = home
        self.fixed_task = parse_task(task) if task is not None else None
        n_args = len(ENTITIES) + 1
        self.action_space = spaces.MultiDiscrete([len(VERBS), n_args, n_args])
        self.observation_space = spaces.Dict({
            "text": spaces.Text(TEXT_LENGTH, min_length=0, charset=CHARSET),
            "task": spaces.Text(TEXT_LENGTH, min_length=0, charset=CHARSET),
            "room": spaces.Discrete(len(ROOMS)),
            "near": spaces.Discrete(n_args),
            "holding": spaces.MultiBinary(len(OBJECTS)),
            "visible": spaces.MultiBinary(len(OBJECTS)),
        })
        self.world: World | None = None
        self.task: Task | None = None
        self.t = 0

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Draw a home and a task (``options``: ``home`` id, ``task`` instruction or :class:`Task`)."""
        super().reset(seed=seed)
        options = options or {}
        home_id = options.get("home", self.fixed_home)
        if home_id is None:
            home_id = int(self.np_random.choice(split_homes(self.split)))
        task = options.get("task", self.fixed_task)
        if task is None:
            tasks = split_tasks(self.split)
            task = tasks[int(self.np_random.integers(len(tasks)))]
        elif isinstance(task, str):
            task = parse_task(task)
        self.task = task
        self.world = World.from_home(generate_home(int(home_id)))
        task.prepare(self.world)
        self.t = 0
        return self._obs(), {"home": int(home_id), "task": task.instruction, "success": False}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """One action: a ``MultiDiscrete`` triple, an :class:`Action`, or the step in words."""
        world, task = self._live()
        parsed = self.to_action(action)
        feedback = parsed if isinstance(parsed, Feedback) else world.execute(parsed)
        self.t += 1
        success = task.satisfied(world)
        info = {"success": success, "executable": feedback.executable, "feedback": feedback.text,
                "error_kind": feedback.kind, "step": parsed.text if isinstance(parsed, Action) else str(action),
                "progress": task.progress(world)}
        return self._obs(), float(success), success, self.t >= self.max_steps and not success, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.world is None:
            return None
        return self.world.observation_text()

    # -- actions ------------------------------------------------------------------------------------
    def to_action(self, action: Any) -> Action | Feedback:
        """An action in any accepted form as an :class:`Action`, or the interface error it causes.

        Argument slots past the verb's arity are ignored; a missing argument is ``wrong_arguments``."""
        if isinstance(action, Action):
            return action
        if isinstance(action, str):
            return parse_action(action)
        a = np.asarray(action).reshape(-1)
        verb = VERBS[int(a[0])]
        args = tuple(ENTITIES[int(i) - 1] for i in a[1:1 + verb.arity] if int(i) > 0)
        if len(args) != verb.arity:
            return Feedback(False, f"Wrong arguments for {verb.words[0]}. Robot agent should write "
                            f"{verb.template.format('<object>', '<object>')}.", "wrong_arguments")
        return Action(verb.name, args)

    @staticmethod
    def encode(action: Action) -> np.ndarray:
        """An :class:`Action` as the ``MultiDiscrete`` triple."""
        slots = [ENTITIES.index(a) + 1 for a in action.args] + [0, 0]
        return np.array([VERB_INDEX[action.verb], slots[0], slots[1]], dtype=np.int64)

    def check(self, action: Any) -> Feedback:
        """The feedback ``action`` would get, without changing the episode (a dry run on a copy)."""
        world, _ = self._live()
        parsed = self.to_action(action)
        return parsed if isinstance(parsed, Feedback) else world.copy().execute(parsed)

    def expert_step(self) -> Action | None:
        """The expert planner's next step from the current state (None: done or unreachable)."""
        world, task = self._live()
        return next_expert_step(world, task)

    def expert_plan(self) -> list[Action]:
        """The expert's whole plan from the current state."""
        world, task = self._live()
        return expert_plan(world, task)

    # -- state for cards ----------------------------------------------------------------------------
    @property
    def goal_progress(self) -> float:
        """Fraction of the task's parts whose goal holds (0 before the first reset)."""
        return 0.0 if self.world is None or self.task is None else self.task.progress(self.world)

    @property
    def agent_room_index(self) -> int:
        return 0 if self.world is None else ROOMS.index(self.world.room)

    @property
    def held_count(self) -> int:
        return 0 if self.world is None else len(self.world.holding)

    @property
    def task_held(self) -> int:
        """How many of the task's objects (tools included) the agent holds (0 before the first reset)."""
        if self.world is None or self.task is None:
            return 0
        return sum(o in self.world.holding for o in self.task.objects)

    @property
    def task_near(self) -> float:
        """1 when the agent is close to one of the task's objects (holds it, walked to it, or walked to
        what it is in or on), else 0."""
        if self.world is None or self.task is None:
            return 0.0
        w = self.world
        return float(any(w.exists(o) and w.close_to(o) for o in self.task.objects))

    @property
    def task_in_room(self) -> float:
        """Fraction of the task's objects (not eaten) in the agent's room (0 before the first reset)."""
        if self.world is None or self.task is None:
            return 0.0
        w = self.world
        objects = [o for o in self.task.objects if w.exists(o)]
        return sum(w.room_of(o) == w.room for o in objects) / len(objects) if objects else 0.0

    def _live(self) -> tuple[World, Task]:
        if self.world is None or self.task is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self.world, self.task

    def _obs(self) -> dict[str, Any]:
        world, task = self._live()
        near = 0 if world.near is None else ENTITIES.index(world.near) + 1
        return {
            "text": world.observation_text(),
            "task": task.instruction,
            "room": ROOMS.index(world.room),
            "near": near,
            "holding": np.array([o in world.holding for o in OBJECTS], dtype=np.int8),
            "visible": np.array([world.visible(o) for o in OBJECTS], dtype=np.int8),
        }
