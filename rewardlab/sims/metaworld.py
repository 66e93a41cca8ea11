"""MetaWorld v3 single-task envs (MT1).

Each reset draws the next of the task's 50 goal variations in a fixed, seeded cycle
(``task_select="pseudorandom"``), so two reward sources evaluated with the same seed see the same goals.
"""

from __future__ import annotations

import os
import warnings

import gymnasium as gym

from rewardlab.cards import EnvCard


def make_env(card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
    os.environ.setdefault("MUJOCO_GL", "egl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import metaworld

        env = metaworld.make_mt_envs(
            card.env_id,
            seed=seed,
            max_episode_steps=card.episode_steps,
            task_select="pseudorandom",
            render_mode=render_mode,
            **card.make_kwargs,
        )
    # make_mt_envs leaves task sampling off: without it the first reset fails (no task set).
    env.get_wrapper_attr("toggle_sample_tasks_on_reset")(True)
    return env
