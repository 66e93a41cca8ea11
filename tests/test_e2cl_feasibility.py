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


class RecordingPolicy:
    """Remembers the observation ``predict`` was given."""

    seen: np.ndarray | None = None

    def predict(self, obs: Any, deterministic: bool = False) -> tuple[np.ndarray, None]:
        self.seen = np.asarray(obs)
        return np.zeros(2), None


def test_a_normalised_policy_sees_its_observations_as_in_training(tmp_path: Any) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rewardlab.e2cl.control.feasibility import NormalizedPolicy

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Reacher-v5")]), clip_obs=10.0)
    venv.obs_rms.mean = np.full(10, 2.0)
    venv.obs_rms.var = np.full(10, 4.0)
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    inner = RecordingPolicy()
    NormalizedPolicy(inner, tmp_path).predict(np.full(10, 6.0))
    assert inner.seen is not None and np.allclose(inner.seen, (6.0 - 2.0) / np.sqrt(4.0 + venv.epsilon))
    bare = RecordingPolicy()  # a trial trained without normalisation: observations pass unchanged
    NormalizedPolicy(bare, tmp_path / "elsewhere").predict(np.full(10, 6.0))
    assert bare.seen is not None and np.array_equal(bare.seen, np.full(10, 6.0))


@pytest.mark.parametrize(("card", "v_max", "message"), [
    ("mujoco/Reacher-v5", -1.0, "v_max must be positive"),
    ("gridworld/chain", 10.0, "needs a MuJoCo env"),
])
def test_a_bad_limit_or_card_is_refused_before_any_training(tmp_path: Any, card: str, v_max: float,
                                                            message: str) -> None:
    from rewardlab.e2cl.control.feasibility import feasibility_experiment

    with pytest.raises(UserError, match=message):
        feasibility_experiment(card, 50_000, 100, [0], v_max, 1, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_an_env_without_a_target_distance_reports_none_not_a_crash() -> None:
    env = JointSpeedFeedback(gym.make("InvertedPendulum-v5"), v_max=50.0)
    result = evaluate(RandomPolicy(env.action_space, 0), env, 1, seed=0)  # type: ignore[arg-type]
    assert 0.0 <= result["violation_rate"] <= 1.0  # type: ignore[operator]
    assert result["final_distance"] is None and result["success"] is None


@pytest.mark.slow
def test_trials_of_two_cards_in_one_folder_are_kept_apart(tmp_path: Any) -> None:
    from rewardlab.e2cl.control.feasibility import feasibility_experiment

    reacher = feasibility_experiment("mujoco/Reacher-v5", 2048, 50, [0], 10.0, 1, tmp_path)
    pendulum = feasibility_experiment("mujoco/InvertedPendulum-v5", 2048, 50, [0], 50.0, 1, tmp_path)  # no reuse
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppo-mujoco_InvertedPendulum-v5-s0-2048",
                                                          "ppo-mujoco_Reacher-v5-s0-2048"]
    assert reacher[0]["plain"]["success"] is not None and pendulum[0]["plain"]["success"] is None
