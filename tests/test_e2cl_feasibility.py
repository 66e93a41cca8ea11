"""E2CL for continuous control: joint-speed feedback on MuJoCo Reacher, the learned feasibility model and
corrector, and the speculative-correction wrapper."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.e2cl.control.feasibility import (
    JointSpeedFeedback,
    SpeculativeCorrection,
    collect,
    evaluate,
    retry,
    train_models,
)
from rewardlab.errors import UserError


class RandomPolicy:
    """SB3's ``predict`` over uniform random actions (rough, fast swings: many violations)."""

    def __init__(self, space: gym.spaces.Box, seed: int):
        self.space, self.rng = space, np.random.default_rng(seed)

    def predict(self, obs: Any, deterministic: bool = False) -> tuple[np.ndarray, None]:
        return self.rng.uniform(self.space.low, self.space.high), None


def test_feedback_is_a_dry_run_and_flags_fast_joints() -> None:
    env = JointSpeedFeedback(gym.make("Reacher-v5"), v_max=5.0)
    env.reset(seed=0)
    u: Any = env.unwrapped
    before = (u.data.qpos.copy(), u.data.qvel.copy())
    assert env.check(np.array([1.0, 1.0])) in (True, False)
    assert np.array_equal(u.data.qpos, before[0]) and np.array_equal(u.data.qvel, before[1])
    flags, fixes = [], []
    for t in range(30):
        a = np.array([1.0, -1.0]) if t % 4 else np.array([-1.0, 1.0])
        predicted = env.check(a)
        if predicted:
            fixes.append(retry(env, a))
        *_, info = env.step(a)
        assert info["violation"] == predicted  # the dry run says what the real step does
        flags.append(predicted)
    assert any(flags) and any(f is not None for f in fixes)
    with pytest.raises(UserError, match="needs a MuJoCo env"):
        JointSpeedFeedback(gym.make("CartPole-v1"))


def test_learned_feasibility_and_correction_reduce_violations() -> None:
    feedback = JointSpeedFeedback(gym.make("Reacher-v5"), v_max=8.0)
    space = feedback.action_space
    assert isinstance(space, gym.spaces.Box)
    policy = RandomPolicy(space, 0)
    data = collect(policy, feedback, steps=400, seed=0)
    assert len(data.states) == 800 and 0.05 < data.violated.mean() < 0.95 and len(data.fix_states) > 0
    f, c = train_models(data, seed=0, epochs=20)
    plain = evaluate(RandomPolicy(space, 1), JointSpeedFeedback(gym.make("Reacher-v5"), v_max=8.0), 4, seed=100)
    wrapped = SpeculativeCorrection(JointSpeedFeedback(gym.make("Reacher-v5"), v_max=8.0), f, c)
    corrected = evaluate(RandomPolicy(space, 1), wrapped, 4, seed=100)
    assert wrapped.fired > 0 and wrapped.accepted > 0
    assert corrected["violation_rate"] < plain["violation_rate"]
