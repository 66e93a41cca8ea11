"""MetaWorld v3 single-task envs (MT1).

Each reset draws the next of the task's 50 goal variations in a fixed, seeded cycle
(``task_select="pseudorandom"``), so two reward sources evaluated with the same seed see the same goals.
MetaWorld ends episodes itself at ``max_path_length`` (500 by default); the adapter sets it to the
card's ``episode_steps``, so a card's episode length is honoured. The scripted experts are
``metaworld.policies``.

A task's goal set is MT1's (:func:`mt1_tasks`), drawn without the resets' physics and cached on disk;
on a cold cache the env that drew the goals is the one :meth:`MetaWorldSimulator.make_env` returns,
put back as constructed, so a cold ``rewardlab check`` makes one MetaWorld env, not two.
"""

from __future__ import annotations

import os
import threading
import warnings
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.paths import cache_dir, safe_name
from rewardlab.sims.base import Policy, Simulator

#: The observation's hand and first-object positions (MetaWorld v3's layout, every task).
HAND = slice(0, 3)
OBJECT = slice(4, 7)
#: How close (m) the hand gets to the object before the reach-and-halt probe stops moving.
HALT_DISTANCE = 0.05
#: How far (m) the object may move before the reach-and-halt probe stops (its first contact).
MOVED_DISTANCE = 0.005


def _task_kwargs(env_id: str) -> dict[str, Any]:
    """The constant part of an MT1 task's data, as ``metaworld._make_tasks`` builds it."""
    import metaworld
    from metaworld import _env_dict

    kwargs = dict(_env_dict.ML1_ARGS_KWARGS[env_id]["kwargs"])
    del kwargs["task_id"]
    kwargs["env_cls"] = _env_dict.ALL_V3_ENVIRONMENTS[env_id]
    kwargs.update(metaworld._MT_OVERRIDE)
    return kwargs


#: Goal variations per MT1 task (``metaworld._N_GOALS``).
N_GOALS = 50


class _Snapshot:
    """An env's state as constructed: its Python attributes and its MuJoCo model and data arrays, to
    put back after the goal draw (the resets move bodies and sites in the model, set attributes)."""

    def __init__(self, env: Any):
        self.attrs = dict(vars(env))
        self.attr_arrays = {k: v.copy() for k, v in self.attrs.items() if isinstance(v, np.ndarray)}
        self.model = _arrays(env.model)
        self.data = _arrays(env.data)

    def restore(self, env: Any) -> None:
        vars(env).clear()
        vars(env).update(self.attrs)
        for k, saved in self.attr_arrays.items():
            self.attrs[k][...] = saved  # in place: other names may alias the same array
        for obj, saved_arrays in ((env.model, self.model), (env.data, self.data)):
            for name, saved in saved_arrays.items():
                current = getattr(obj, name)
                if current.shape == saved.shape:  # sized per step (contacts, constraints): recomputed anyway
                    current[...] = saved


def _arrays(obj: Any) -> dict[str, np.ndarray]:
    """Copies of the writable array fields of a MuJoCo ``MjModel`` or ``MjData``."""
    out = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a binding property that cannot be read here is not state we set
            continue
        if isinstance(value, np.ndarray) and value.flags.writeable:
            out[name] = value.copy()
    return out


#: ``.spare``: ``((env_id, seed), env)``, the env that drew a task's goals, put back as constructed, for
#: the :meth:`~MetaWorldSimulator.make_env` that asked for them (one slot per thread: a cold start
#: makes one env instead of two).
_handoff = threading.local()


def _keep_spare(key: tuple[str, int], env: Any) -> None:
    old = getattr(_handoff, "spare", None)
    if old is not None:
        old[1].close()
    _handoff.spare = (key, env)


def _take_spare(key: tuple[str, int]) -> Any | None:
    """The spare env of ``key`` drawn in this thread, once; None when there is none."""
    spare = getattr(_handoff, "spare", None)
    if spare is None or spare[0] != key:
        return None
    _handoff.spare = None
    return spare[1]


def _draw_goals(env_id: str, seed: int, keep_env: bool = False) -> np.ndarray:
    """The goal vectors ``metaworld.MT1(env_id, seed)`` draws, drawn the way ``metaworld._make_tasks``
    draws them (seed numpy's global generator, make the env with its default arguments, reset it 50
    times keeping each reset's ``_last_rand_vec``, restore the generator), but without the physics of
    the resets.

    A reset spends almost all of its ~8 ms in ``_reset_hand``: 50 x ``frame_skip`` MuJoCo steps that
    move the hand to its start. No goal draw reads their result (every draw comes from numpy's global
    generator; the rejection loops compare draws with each other), so here ``do_simulation`` only
    recomputes the kinematics (``mj_forward``: the reset code reads positions and frames) and the hand
    reset makes one such call instead of 50. The vectors are bit-identical to MT1's (checked for all
    50 v3 tasks with seeds 0, 1 and 7, metaworld 3.1.1; ``tests/test_sims.py`` checks a few).

    :param keep_env: put the env back as constructed (attributes, model and data arrays) and keep it in
        this thread's :data:`_handoff` for :meth:`MetaWorldSimulator.make_env`, instead of closing it
    """
    import functools

    import mujoco
    from metaworld import _env_dict

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        env: Any = _env_dict.ALL_V3_ENVIRONMENTS[env_id]()
        snapshot = _Snapshot(env) if keep_env else None
        env._freeze_rand_vec = False
        env._set_task_called = True
        kwargs = dict(_env_dict.ML1_ARGS_KWARGS[env_id]["kwargs"])
        del kwargs["task_id"]
        env._set_task_inner(**kwargs)
        env.do_simulation = lambda ctrl, n_frames: mujoco.mj_forward(env.model, env.data)
        env._reset_hand = functools.partial(type(env)._reset_hand, env, steps=1)
        rand_vecs = []
        for _ in range(N_GOALS):
            env.reset()
            rand_vecs.append(env._last_rand_vec)
    finally:
        np.random.set_state(state)
    goals = np.array(rand_vecs)
    if len(np.unique(goals, axis=0)) != N_GOALS:  # MT1 asserts the same
        env.close()
        raise ValueError(f"{env_id}: only {len(np.unique(goals, axis=0))} unique goals drawn with seed {seed}")
    if snapshot is None:
        env.close()
    else:
        snapshot.restore(env)
        _keep_spare((env_id, seed), env)
    return goals


@lru_cache(maxsize=64)
def mt1_tasks(env_id: str, seed: int) -> tuple[Any, ...]:
    """The 50 goal variations ``metaworld.MT1(env_id, seed)`` generates, memoised in the process and
    cached on disk as their goal vectors. MT1 resets an env 50 times to draw them (about 0.5 s per
    env made, and training makes one env per evaluation episode); :func:`_draw_goals` draws the same
    vectors without the resets' physics and keeps its env for the :meth:`~MetaWorldSimulator.make_env`
    that asked. Equal to MT1's tasks (tested)."""
    import metaworld

    path = cache_dir() / "metaworld-goals" / f"{version('metaworld')}-{safe_name(env_id)}-{seed}.npy"
    rand_vecs = None
    if path.is_file():
        try:
            rand_vecs = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            rand_vecs = None
        if rand_vecs is not None and (rand_vecs.ndim != 2 or len(rand_vecs) != N_GOALS):
            rand_vecs = None
    if rand_vecs is None:
        rand_vecs = _draw_goals(env_id, seed, keep_env=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, rand_vecs)
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written costs only the time to draw the goals again
    base = _task_kwargs(env_id)
    return tuple(metaworld._encode_task(env_id, {**base, "rand_vec": rv}) for rv in rand_vecs)


class _EnvClass:
    """``env_cls`` for ``metaworld._init_each_env``: the spare env that drew the goals when the
    arguments are the class defaults it was made with, else a new one. Formats as the class (the
    checkpoint wrapper names itself after it)."""

    def __init__(self, cls: type, spare: Any | None):
        self.cls = cls
        self.spare = spare

    def __call__(self, **kwargs: Any) -> Any:
        import inspect

        spare, self.spare = self.spare, None
        if spare is not None:
            params = inspect.signature(self.cls).parameters
            if all(k in params and params[k].default == v for k, v in kwargs.items()):
                return spare
            spare.close()
        return self.cls(**kwargs)

    def __str__(self) -> str:
        return str(self.cls)


class MetaWorldSimulator(Simulator):
    name = "metaworld"
    packages = ("metaworld", "mujoco", "gymnasium")

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        os.environ.setdefault("MUJOCO_GL", "egl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import metaworld

            env: Any
            if seed is None or card.env_id not in metaworld.ALL_V3_ENVIRONMENTS:
                env = metaworld.make_mt_envs(card.env_id, seed=seed, max_episode_steps=card.episode_steps,
                                             task_select="pseudorandom", render_mode=render_mode, **card.make_kwargs)
            else:
                # what make_mt_envs does for one task, with the goals from mt1_tasks (each env gets its
                # own list, which the task wrapper shuffles in place), in the env that drew them when
                # they were drawn just now
                tasks = list(mt1_tasks(card.env_id, seed))
                cls = metaworld.ALL_V3_ENVIRONMENTS[card.env_id]
                env = metaworld._init_each_env(
                    env_cls=_EnvClass(cls, _take_spare((card.env_id, seed))),  # type: ignore[arg-type]
                    tasks=tasks,
                    seed=seed, num_tasks=1, max_episode_steps=card.episode_steps, task_select="pseudorandom",
                    render_mode=render_mode, **card.make_kwargs,  # type: ignore[arg-type]
                )
        # make_mt_envs leaves task sampling off: without it the first reset fails (no task set).
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(True)
        # MetaWorld truncates at its own max_path_length (500) whatever the TimeLimit says: honour the card.
        env.unwrapped.max_path_length = card.episode_steps
        return env

    def known_env_ids(self) -> list[str]:
        import metaworld

        return sorted(metaworld.ALL_V3_ENVIRONMENTS)

    def episode_limit(self, env: gym.Env) -> int | None:
        base: Any = env.unwrapped
        return int(base.max_path_length)

    def expert(self, card: EnvCard) -> Policy | None:
        from metaworld.policies import ENV_POLICY_MAP

        if card.env_id not in ENV_POLICY_MAP:
            return None
        policy_cls: Any = ENV_POLICY_MAP[card.env_id]
        scripted = policy_cls()
        return lambda obs, t: scripted.get_action(obs)  # unclipped: the env clips, so do the checks

    def probe_policies(self, card: EnvCard, expert: Policy, rng: np.random.Generator) -> list[tuple[str, Policy]]:
        low, high = -1.0, 1.0  # MetaWorld's action bounds

        episode: dict[str, Any] = {}

        def reach_and_halt(obs: np.ndarray, t: int) -> np.ndarray:
            # the hacking probe: approach the object like the expert, then hover doing nothing from the
            # moment the hand is near it or the object starts to move (the first contact: in button-press
            # and door-unlock the hand never gets within HALT_DISTANCE of the object's reported point)
            if t == 0:
                episode.update(start=np.array(obs[OBJECT]), halted=False)
            near = np.linalg.norm(obs[HAND] - obs[OBJECT]) < HALT_DISTANCE
            moved = np.linalg.norm(obs[OBJECT] - episode["start"]) > MOVED_DISTANCE
            episode["halted"] = episode["halted"] or near or moved
            return np.zeros(card.action.shape) if episode["halted"] else np.clip(expert(obs, t), low, high)

        return [("reach-and-halt", reach_and_halt)]
