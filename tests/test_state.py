"""The state extractor reads only what a program can use, and gathers it correctly."""

from __future__ import annotations

import numpy as np

from rewardlab.cards import load_card
from rewardlab.sims import make_env
from rewardlab.state import StateExtractor, fields_used_by


def test_fields_used_by_finds_fields_read_through_helpers() -> None:
    card = load_card("metaworld/drawer-open-v3")
    source = ("def dist(robot, obj):\n    return robot.ee_position - obj.position\n"
              "def compute_dense_reward(self, action):\n    return dist(self.robot, self.obj1)[:, 0]\n")
    assert set(fields_used_by(card, source)) == {"robot.ee_position", "obj1.position"}


def test_native_reward_extracts_only_the_success_field() -> None:
    reacher = load_card("mujoco/Reacher-v5")
    assert list(StateExtractor.for_program(reacher, None).fields) == ["target.distance"]
    assert StateExtractor.for_program(load_card("mujoco/HalfCheetah-v5"), None).dim == 0


def test_partial_extractor_matches_the_full_one() -> None:
    card = load_card("mujoco/Hopper-v5")
    env = make_env(card, seed=0)
    full = StateExtractor(card)
    part = StateExtractor(card, ["torso.x_velocity", "torso.height"])
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    f = full.view(full.batch(obs[None], full.sim_vector(env)[None]))
    p = part.view(part.batch(obs[None], part.sim_vector(env)[None]))
    np.testing.assert_array_equal(p.torso.x_velocity, f.torso.x_velocity)
    np.testing.assert_array_equal(p.torso.height, f.torso.height)
    assert part.dim == 2 and not hasattr(p.torso, "angle")
