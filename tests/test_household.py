# ruff: noqa: E501  (CASES is a table: one case per line)
"""The household environment: every verb's preconditions and feedback, the expert planner on every
generated task, the splits, determinism, and gymnasium's env checker."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rewardlab.errors import UserError
from rewardlab.household import HouseholdEnv, World, expert_plan, generate_home, split_homes, split_tasks
from rewardlab.household.tasks import SPLITS, UNSEEN_PAIRS, compositions, parse_task, single_tasks, train_homes
from rewardlab.household.world import ERROR_KINDS, VERBS, Action, parse_action


def _world(**changes: object) -> World:
    """Home 0, normalised: agent standing in the kitchen close to nothing, everything closed, off,
    plugged in and dirty (each case adds what it needs)."""
    w = World.from_home(generate_home(0), start_room="kitchen")
    for obj, s in w.states.items():
        s.clear()
        if w.has(obj, "plug"):
            s.add("plugged")
    for k, v in changes.items():
        setattr(w, k, v)
    return w


def _near(obj: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.room = w.room_of(obj)
        w.near = obj
    return setup


def _holding(*objs: str, near: str | None = None) -> Callable[[World], None]:
    def setup(w: World) -> None:
        for o in objs:
            w.location[o] = ("hand", "")
            w.holding.append(o)
        if near is not None:
            _near(near)(w)
        else:
            w.room = "kitchen"
    return setup


def _then(*setups: Callable[[World], None]) -> Callable[[World], None]:
    def setup(w: World) -> None:
        for s in setups:
            s(w)
    return setup


def _state(obj: str, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.states[obj] |= set(add)
        w.states[obj] -= set(remove)
    return setup


def _at(obj: str, rel: str, where: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.location[obj] = (rel, where)
    return setup


# (verb, setup, step, expected kind or None for executable, words the feedback must contain)
CASES: list[tuple[str, Callable[[World], None], str, str | None, str]] = [
    ("walk", lambda w: None, "walk to bathroom", None, "True"),
    ("walk", _at("cup", "in", "fridge"), "walk to cup", "inside_closed", "cup is inside the closed fridge. Robot agent should open fridge first."),
    ("walk", lambda w: setattr(w, "room", "bathroom"), "walk to fridge", "not_in_room", "fridge is not in the bathroom"),
    ("grab", _then(_at("cup", "on", "counter"), _near("counter")), "grab cup", None, "True"),
    ("grab", _then(_at("cup", "on", "counter"), lambda w: setattr(w, "room", "kitchen")), "grab cup", "not_close", "cup is not close to robot agent. Robot agent should walk to cup first."),
    ("grab", _near("fridge"), "grab fridge", "cannot", "fridge cannot be grabbed."),
    ("grab", _then(_holding("apple", "bread"), _at("cup", "on", "counter"), _near("counter")), "grab cup", "hands_full", "hands are full"),
    ("drop", _holding("cup"), "drop cup", None, "True"),
    ("drop", lambda w: None, "drop cup", "not_held", "cup not in hand. Robot agent should hold cup first."),
    ("put_on", _holding("cup", near="counter"), "put cup on counter", None, "True"),
    ("put_on", _near("counter"), "put cup on counter", "not_held", "cup not in hand. Robot agent should hold cup first."),
    ("put_on", _holding("cup", near="fridge"), "put cup on fridge", "cannot", "fridge cannot be put on."),
    ("put_in", _then(_holding("cup", near="fridge"), _state("fridge", add=("open",))), "put cup in fridge", None, "True"),
    ("put_in", _then(_holding("cup", near="fridge"), _state("fridge", remove=("open",))), "put cup in fridge", "state", "fridge is closed. Robot agent should open fridge first."),
    ("put_in", _holding("cup", near="fridge"), "put cup in cup", "self_reference", "cannot put cup in itself"),
    ("open", _then(_near("fridge"), _state("fridge", remove=("open",))), "open fridge", None, "True"),
    ("open", _then(_near("fridge"), _state("fridge", add=("open",))), "open fridge", "state", "fridge is already open."),
    ("open", _then(_near("microwave"), _state("microwave", add=("on", "plugged"), remove=("open",))), "open microwave", "state", "microwave is on. Robot agent should switch off microwave first."),
    ("close", _then(_near("fridge"), _state("fridge", add=("open",))), "close fridge", None, "True"),
    ("close", _near("counter"), "close counter", "cannot", "counter cannot be closed."),
    ("switch_on", _then(_near("tv"), _state("tv", add=("plugged",), remove=("on",))), "switch on tv", None, "True"),
    ("switch_on", _then(_near("tv"), _state("tv", remove=("plugged", "on"))), "switch on tv", "state", "tv is unplugged. Robot agent should plug in tv first."),
    ("switch_on", _then(_near("microwave"), _state("microwave", add=("plugged", "open"), remove=("on",))), "switch on microwave", "state", "microwave is open. Robot agent should close microwave first."),
    ("switch_off", _then(_near("tv"), _state("tv", remove=("on",))), "switch off tv", "state", "tv is already off."),
    ("switch_off", _then(_near("tv"), _state("tv", add=("on", "plugged"))), "switch off tv", None, "True"),
    ("plug_in", _then(_near("lamp"), _state("lamp", remove=("plugged",))), "plug in lamp", None, "True"),
    ("plug_in", _near("sofa"), "plug in sofa", "cannot", "sofa cannot be plugged in."),
    ("unplug", _then(_near("lamp"), _state("lamp", remove=("plugged",))), "unplug lamp", "state", "lamp is already unplugged."),
    ("unplug", _near("lamp"), "unplug lamp", None, "True"),
    ("wash", _then(_holding("cup", near="sink"), _state("sink", add=("on",))), "wash cup", None, "True"),
    ("wash", _then(_holding("cup", near="sink"), _state("sink", remove=("on",))), "wash cup", "state", "sink is off. Robot agent should switch on sink first."),
    ("wash", _holding("cup", near="fridge"), "wash cup", "not_close", "Robot agent should walk to sink first."),
    ("wipe", _holding("rag", near="counter"), "wipe counter", None, "True"),
    ("wipe", _near("counter"), "wipe counter", "missing_tool", "rag not in hand. Robot agent should hold rag first."),
    ("cut", _then(_at("bread", "on", "counter"), _holding("knife", near="counter")), "cut bread", None, "True"),
    ("cut", _then(_at("bread", "on", "counter"), _near("counter")), "cut bread", "missing_tool", "knife not in hand. Robot agent should hold knife first."),
    ("eat", _holding("apple"), "eat apple", None, "True"),
    ("eat", _holding("cup"), "eat cup", "cannot", "cup cannot be eaten."),
    ("drink", _holding("cup"), "drink cup", "state", "cup is empty. Robot agent should pour something into cup first."),
    ("drink", _then(_holding("cup"), lambda w: w.filled_with.update(cup="milk")), "drink cup", None, "True"),
    ("pour", _then(_at("cup", "on", "counter"), _holding("milk", near="counter")), "pour milk into cup", None, "True"),
    ("pour", _then(_at("cup", "on", "counter"), _near("counter")), "pour milk into cup", "not_held", "milk not in hand."),
    ("sit", _near("chair"), "sit on chair", None, "True"),
    ("sit", _near("fridge"), "sit on fridge", "cannot", "fridge cannot be sat on."),
    ("lie", _near("bed"), "lie on bed", None, "True"),
    ("lie", _then(_near("sofa"), lambda w: setattr(w, "posture", ("sitting", "sofa"))), "lie on sofa", "posture", "Robot agent is sitting on the sofa. Robot agent should stand up first."),
    ("stand_up", lambda w: setattr(w, "posture", ("sitting", "sofa")), "stand up", None, "True"),
    ("stand_up", lambda w: None, "stand up", "state", "Robot agent is already standing."),
    ("look_at", lambda w: None, "look at fridge", None, "True"),
    ("look_at", lambda w: setattr(w, "room", "bathroom"), "look at fridge", "not_in_room", "fridge is not in the bathroom."),
    ("watch", _then(_near("tv"), _state("tv", add=("on", "plugged"))), "watch tv", None, "True"),
    ("watch", _then(_near("tv"), _state("tv", remove=("on",))), "watch tv", "state", "tv is off. Robot agent should switch on tv first."),
    ("read", _holding("book"), "read book", None, "True"),
    ("read", _holding("cup"), "read cup", "cannot", "cup cannot be read."),
    ("type", _then(_near("computer"), _state("computer", add=("on", "plugged"))), "type on computer", None, "True"),
    ("type", _then(_near("computer"), _state("computer", remove=("on",))), "type on computer", "state", "computer is off. Robot agent should switch on computer first."),
    ("touch", _near("fridge"), "touch fridge", None, "True"),
    ("touch", lambda w: None, "touch fridge", "not_close", "fridge is not close to robot agent."),
]


@pytest.mark.parametrize(("verb", "setup", "step", "kind", "words"), CASES,
                         ids=[f"{c[0]}-{c[3] or 'ok'}-{i}" for i, c in enumerate(CASES)])
def test_preconditions_and_feedback(verb: str, setup: Callable[[World], None], step: str, kind: str | None, words: str) -> None:
    w = _world()
    setup(w)
    action = parse_action(step)
    assert isinstance(action, Action) and action.verb == verb
    before = w.copy()
    fb = w.execute(action)
    assert fb.kind == kind, fb.message
    assert words.lower() in fb.text.lower()
    if kind is not None:  # an infeasible action changes nothing
        assert (w.location, w.states, w.room, w.near, w.holding, w.posture) == (
            before.location, before.states, before.room, before.near, before.holding, before.posture)
        assert fb.text.startswith("Error, ")


def test_every_verb_has_a_feasible_and_an_infeasible_case() -> None:
    verbs = {v.name for v in VERBS}
    assert len(verbs) >= 20
    assert {c[0] for c in CASES if c[3] is None} == verbs
    assert {c[0] for c in CASES if c[3] is not None} == verbs
    assert {c[3] for c in CASES if c[3]} | {"unknown_verb", "wrong_arguments", "unknown_object"} == set(ERROR_KINDS)


@pytest.mark.parametrize(("text", "kind", "words"), [
    ("fly to kitchen", "unknown_verb", "Unknown action fly"),
    ("put apple", "wrong_arguments", "put <object> on <object> or put <object> in <object>"),
    ("grab spaceship", "unknown_object", "There is no spaceship in this home."),
    ("", "unknown_verb", "empty"),
])
def test_interface_errors(text: str, kind: str, words: str) -> None:
    fb = parse_action(text)
    assert not isinstance(fb, Action) and fb.kind == kind and words in fb.message


def test_eaten_objects_are_gone() -> None:
    w = _world()
    _holding("apple")(w)
    assert w.execute("eat apple").executable
    fb = w.execute("grab apple")
    assert fb.kind == "unknown_object" and "ate it" in fb.message


def test_appliances_act_on_their_contents() -> None:
    w = _world()
    _then(_at("apple", "in", "microwave"), _near("microwave"), _state("microwave", add=("plugged",), remove=("open", "on")))(w)
    assert w.execute("switch on microwave").executable
    assert "hot" in w.states["apple"]


def _solve(home: int, task_text: str) -> int:
    task = parse_task(task_text)
    w = World.from_home(generate_home(home))
    task.prepare(w)
    assert not task.satisfied(w), f"{task_text!r} already holds in home {home}"
    plan = expert_plan(w, task)
    # the E2CL agents never repeat their last step (it would fail again or change nothing): the expert never does
    assert all(a != b for a, b in zip(plan, plan[1:], strict=False)), f"home {home}, {task_text!r}: a step repeats"
    for step in plan:
        fb = w.execute(step)
        assert fb.executable, f"home {home}, {task_text!r}: {step.text}: {fb.message}"
    assert task.satisfied(w), f"home {home}: the plan did not solve {task_text!r}"
    return len(plan)


def test_expert_solves_every_single_task_in_every_home() -> None:
    lengths = [_solve(h, t.instruction) for split in SPLITS for h in split_homes(split) for t in single_tasks()]
    assert max(lengths) <= 30


def test_expert_solves_every_composition() -> None:
    """Every composition of every split, each in a home of its split (2 homes apart per task)."""
    for split in SPLITS:
        homes = split_homes(split)
        tasks = [t for t in split_tasks(split) if len(t.parts) == 2]
        for i, task in enumerate(tasks):
            assert _solve(homes[i % len(homes)], task.instruction) <= 30


def test_expert_plans_from_states_the_agent_left() -> None:
    """Teacher-free corrections plan from mid-episode states: sitting, hands full, things opened."""
    env = HouseholdEnv(split="train")
    rng = np.random.default_rng(0)
    for seed in range(40):
        env.reset(seed=seed)
        for _ in range(8):  # random steps, then the expert must still finish
            env.step(env.action_space.sample() if rng.random() < 0.5 else env.expert_step() or "stand up")
        assert env.world is not None and env.task is not None
        if any(("eaten", o) in env.world.events for o in ("apple", "bread")):
            continue
        for step in env.expert_plan():
            assert env.check(step).executable
            *_, info = env.step(step)
        assert env.task.satisfied(env.world)


def test_splits_hold_out_pairs_and_floor_plans() -> None:
    train = split_tasks("train")
    unseen = split_tasks("unseen_compositions")
    assert unseen and all(t.templates in UNSEEN_PAIRS for t in unseen)
    assert not {t.templates for t in train if len(t.parts) == 2} & UNSEEN_PAIRS
    assert len(compositions()) == len(unseen) + len(train) - len(single_tasks())
    train_layouts = {generate_home(h).layout for h in train_homes()}
    assert all(generate_home(h).layout not in train_layouts for h in split_homes("unseen_homes"))
    with pytest.raises(UserError, match="unknown household split"):
        HouseholdEnv(split="test")
    with pytest.raises(UserError, match="did you mean 'put the apple in the fridge'"):
        parse_task("put the apple in the fridg")


def test_same_seed_same_home_task_and_observation() -> None:
    a, b = HouseholdEnv(), HouseholdEnv()
    seen = set()
    for seed in range(5):
        (oa, ia), (ob, ib) = a.reset(seed=seed), b.reset(seed=seed)
        assert ia == ib and oa["text"] == ob["text"] and oa["task"] == ob["task"]
        seen.add((ia["home"], ia["task"]))
    assert len(seen) > 1
    assert generate_home(3) == generate_home(3) and generate_home(3) != generate_home(4)


def test_env_checker_and_action_forms() -> None:
    env = HouseholdEnv(split="unseen_homes", render_mode="ansi")
    check_env(env, skip_render_check=True)
    env.reset(seed=0, options={"home": 3, "task": "turn on the tv"})
    step = env.expert_step()
    assert step is not None
    assert env.to_action(env.encode(step)) == step == env.to_action(step.text)
    obs, reward, terminated, truncated, info = env.step(env.encode(step))
    assert info["executable"] and info["feedback"] == "True" and info["step"] == step.text
    *_, info = env.step(np.array([1, 0, 0]))  # grab with no argument
    assert info["error_kind"] == "wrong_arguments" and info["feedback"].startswith("Error, ")
    for step in env.expert_plan():
        obs, reward, terminated, truncated, info = env.step(step)
    assert terminated and reward == 1.0 and info["success"]
    assert "You are in the" in (env.render() or "")


@pytest.mark.parametrize("card_id", ["household/train", "household/unseen-compositions", "household/unseen-homes"])
def test_cards_document_every_action_index_as_the_env_decodes_it(card_id: str) -> None:
    from rewardlab.cards import load_card
    from rewardlab.household.world import ENTITIES, VERBS, action_doc

    card = load_card(card_id)
    assert card.action.doc == action_doc()  # written from the env's own tables, kept equal here
    # each documented index is what the env decodes: "3 put A on B" with A = 21 (apple), B = 10 (table)
    env = HouseholdEnv(split="train")
    action = env.to_action(np.array([3, 21, 10]))
    assert isinstance(action, Action)
    assert (action.verb, action.args) == ("put_on", ("apple", "table"))
    assert f"3 {VERBS[3].template.format('A', 'B')}" in card.action.doc and f"21 {ENTITIES[20]}" in card.action.doc


def test_check_samples_states_of_the_structured_observation() -> None:
    # found by a user: `rewardlab check` and `generate` crashed with a traceback on the Dict observation
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program
    from rewardlab.program import RewardProgram
    from rewardlab.rollouts import sample_states

    card = load_card("household/train")
    sampled = sample_states(card, n=16, use_cache=False)
    assert sampled.states.shape[0] == 16 and sampled.obs.shape == (16, 0)  # a Dict has no array columns
    report = check_program(RewardProgram("def compute_dense_reward(self, action):\n    return self.goal.progress\n"),
                           card)
    assert report.ok, report


def test_observation_says_where_the_task_objects_are() -> None:
    """A task object shut in a closed container is not visible, but the observation names its holder."""
    env = HouseholdEnv(split="train")
    env.reset(seed=0, options={"task": "put the plate on the table", "home": 0})
    assert env.world is not None
    env.world.location["plate"] = ("in", "cabinet")
    env.world.states["cabinet"].discard("open")
    text = env.world.observation_text()
    room = env.world.room_of("cabinet")
    assert f"plate is in cabinet in {room}" in text and f"table is in {env.world.room_of('table')}" in text
    assert not env.world.visible("plate")


def test_task_state_fields_follow_an_expert_plan() -> None:
    """The cards' task.held / task.near / task.in_room (read by the reference reward) along an expert plan."""
    env = HouseholdEnv(split="train")
    env.reset(seed=0, options={"task": "wash the cup", "home": 0})
    assert env.world is not None
    env.world.room = next(r for r in ("kitchen", "livingroom", "bedroom", "bathroom")
                          if r not in (env.world.room_of("cup"), env.world.room_of("sink")))
    assert (env.task_held, env.task_near, env.task_in_room) == (0, 0.0, 0.0)
    seen = []
    for step in env.expert_plan():
        env.step(step)
        seen.append((env.task_held, env.task_near, env.task_in_room))
    assert env.goal_progress == 1.0
    assert any(h == 1 for h, _, _ in seen) and seen[-1][1] == 1.0 and seen[-1][2] > 0
    fresh = HouseholdEnv()
    assert (fresh.task_held, fresh.task_near, fresh.task_in_room) == (0, 0.0, 0.0)
