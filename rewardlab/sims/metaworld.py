"""MetaWorld v3 single-task envs (MT1).

Each reset draws the next of the task's 50 goal variations in a fixed, seeded cycle
(``task_select="pseudorandom"``), so two reward sources evaluated with the same seed see the same goals.
MetaWorld ends episodes itself at ``max_path_length`` (500 by default); the adapter sets it to the
card's ``episode_steps``, so a card's episode length is honoured. The scripted experts are
``metaworld.policies``.
"""

from __future__ import annotations

import os
import pickle
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


def _task_kwargs(env_id: str) -> dict[str, Any]:
    """The constant part of an MT1 task's data, as ``metaworld._make_tasks`` builds it."""
    import metaworld
    from metaworld import _env_dict

    kwargs = dict(_env_dict.ML1_ARGS_KWARGS[env_id]["kwargs"])
    del kwargs["task_id"]
    kwargs["env_cls"] = _env_dict.ALL_V3_ENVIRONMENTS[env_id]
    kwargs.update(metaworld._MT_OVERRIDE)
    return kwargs


@lru_cache(maxsize=64)
def mt1_tasks(env_id: str, seed: int) -> tuple[Any, ...]:
    """The 50 goal variations ``metaworld.MT1(env_id, seed)`` generates, memoised in the process and
    cached on disk as their goal vectors (MT1 resets an env 50 times to draw them: about 0.5 s per
    env made, and training makes one env per evaluation episode). Equal to MT1's tasks (tested)."""
    import metaworld

    path = cache_dir() / "metaworld-goals" / f"{version('metaworld')}-{safe_name(env_id)}-{seed}.npy"
    if path.is_file():
        try:
            rand_vecs = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            rand_vecs = None
        if rand_vecs is not None and len(rand_vecs) == 50:
            base = _task_kwargs(env_id)
            return tuple(metaworld._encode_task(env_id, {**base, "rand_vec": rv}) for rv in rand_vecs)
    tasks = tuple(metaworld.MT1(env_id, seed=seed).train_tasks)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.stack([pickle.loads(t.data)["rand_vec"] for t in tasks]))  # our own MT1 tasks
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written costs only the time to draw the goals again
    return tasks


class MetaWorldSimulator(Simulator):
    name = "metaworld"
    packages = ("metaworld", "mujoco", "gymnasium")

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        os.environ.setdefault("MUJOCO_GL", "egl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import metaworld

            if seed is None or card.env_id not in metaworld.ALL_V3_ENVIRONMENTS:
                env = metaworld.make_mt_envs(card.env_id, seed=seed, max_episode_steps=card.episode_steps,
                                             task_select="pseudorandom", render_mode=render_mode, **card.make_kwargs)
            else:
                # what make_mt_envs does for one task, with the goals from mt1_tasks; each env gets its
                # own list, which the task wrapper shuffles in place
                env = metaworld._init_each_env(
                    env_cls=metaworld.ALL_V3_ENVIRONMENTS[card.env_id], tasks=list(mt1_tasks(card.env_id, seed)),
                    seed=seed, num_tasks=1, max_episode_steps=card.episode_steps, task_select="pseudorandom",
                    render_mode=render_mode, **card.make_kwargs,
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
        return int(env.unwrapped.max_path_length)

    def expert(self, card: EnvCard) -> Policy | None:
        from metaworld.policies import ENV_POLICY_MAP

        if card.env_id not in ENV_POLICY_MAP:
            return None
        scripted = ENV_POLICY_MAP[card.env_id]()
        return lambda obs, t: scripted.get_action(obs)  # unclipped: the env clips, so do the checks

    def probe_policies(self, card: EnvCard, expert: Policy, rng: np.random.Generator) -> list[tuple[str, Policy]]:
        low, high = -1.0, 1.0  # MetaWorld's action bounds

        def reach_and_halt(obs: np.ndarray, t: int) -> np.ndarray:
            # the hacking probe: reach the object like the expert, then hover there doing nothing
            near = np.linalg.norm(obs[HAND] - obs[OBJECT]) < HALT_DISTANCE
            return np.zeros(card.action.shape) if near else np.clip(expert(obs, t), low, high)

        return [("reach-and-halt", reach_and_halt)]
