"""Reward wrappers: replace an env's reward by a reward program's, batched, and keep the original.

- :class:`StateCapture` (gymnasium, per env) reads the card's simulator fields at every step, before
  any auto-reset, so the terminal state is the one a reward sees.
- :class:`RewardVecEnv` (SB3 ``VecEnv``) computes the program reward for the whole batch in one call,
  keeps the env's own reward in ``info["env_reward"]``, and at each episode end writes
  ``info["episode_stats"]``: env return, program return, per-component sums, length and success.
- :class:`ProgramReward` (a gymnasium ``Wrapper``) and :class:`ProgramRewardVector` (a gymnasium
  ``VectorWrapper``) do the same for gymnasium code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rewardlab.cards import SuccessRule
from rewardlab.errors import RewardProgramError
from rewardlab.program import CompiledReward
from rewardlab.state import StateExtractor

SIM_KEY = "rewardlab_sim"


@dataclass
class RewardCost:
    """Wall time of the reward path (state extraction + the program) next to the env's step.

    A legal program can still be slow (a Python loop per env, a large array built every step); at
    training time its cost per step is bounded by :class:`RewardVecEnv`: ``fraction`` above
    :data:`WARN_COST_FRACTION` is reported with the result, above ``max_fraction`` the trial stops.

    :param env_s: seconds spent in the wrapped env's steps
    :param reward_s: seconds spent computing rewards
    :param steps: vector steps measured
    """

    env_s: float = 0.0
    reward_s: float = 0.0
    steps: int = 0

    @property
    def fraction(self) -> float:
        """Reward time per step ÷ env time per step."""
        return self.reward_s / self.env_s if self.env_s > 0 else 0.0

    @property
    def us_per_step(self) -> float:
        return 1e6 * self.reward_s / self.steps if self.steps else 0.0

    def summary(self) -> dict[str, float]:
        return {"us_per_step": self.us_per_step, "fraction": self.fraction, "steps": float(self.steps)}


#: Above this reward-to-env time ratio a trial's result carries a warning (training is at least 2x
#: slower than the env alone would make it).
WARN_COST_FRACTION = 1.0
#: Above this ratio, measured over at least :data:`COST_MIN_STEPS` vector steps, training stops.
MAX_COST_FRACTION = 25.0
COST_MIN_STEPS = 200


class StateCapture(gym.Wrapper):
    """Put the card's simulator fields of the state reached by each step into ``info[SIM_KEY]``.

    :param env: one gymnasium env made from the card
    :param extractor: the card's :class:`StateExtractor`
    """

    def __init__(self, env: gym.Env, extractor: StateExtractor):
        super().__init__(env)
        self.extractor = extractor

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info[SIM_KEY] = self.extractor.sim_vector(self.env)
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        info[SIM_KEY] = self.extractor.sim_vector(self.env)
        return obs, info


def step_states(extractor: StateExtractor, obs: Any, dones: np.ndarray,
                infos: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The flat states ``(B, D)`` a VecEnv step reached, and the observations they came from.

    An env whose episode ended was auto-reset by the VecEnv: its state is the terminal one
    (``info["terminal_observation"]`` and the simulator fields :class:`StateCapture` read before the
    reset), never the reset one.
    """
    state_obs = obs
    done_idx = np.flatnonzero(dones)
    if done_idx.size:
        state_obs = np.array(obs, copy=True)
        for i in map(int, done_idx):
            state_obs[i] = infos[i]["terminal_observation"]
    sim = np.stack([info[SIM_KEY] for info in infos]) if extractor.has_sim else None
    return extractor.batch(state_obs, sim), state_obs


class EpisodeSuccess:
    """Tracks a card's :class:`~rewardlab.cards.SuccessRule` over the episodes of a batch of envs.

    :param rule: the card's success rule (None: no rule, success is ``None``)
    :param extractor: where a threshold rule's field lies in the flat state
    :param n_envs: batch size
    """

    def __init__(self, rule: SuccessRule | None, extractor: StateExtractor, n_envs: int):
        self.rule = rule
        self.hit = np.zeros(n_envs, dtype=bool)
        if rule is not None and rule.kind == "threshold":
            self.slice = slice(*extractor.offsets[rule.key])

    @property
    def needs_state(self) -> bool:
        return self.rule is not None and self.rule.kind == "threshold"

    def update(self, infos: list[dict[str, Any]]) -> None:
        if self.rule is not None and self.rule.kind == "info":
            key = self.rule.key
            for i, info in enumerate(infos):
                if info.get(key):
                    self.hit[i] = True

    def now(self, infos: list[dict[str, Any]], flat: np.ndarray | None, dones: np.ndarray) -> np.ndarray:
        """Per env, whether the rule holds at this step: ``info[key]`` true, the field past its
        threshold in the state reached, or (``survived``) the episode reaching its time limit now."""
        assert self.rule is not None
        rule = self.rule
        if rule.kind == "info":
            return np.array([bool(info.get(rule.key)) for info in infos])
        if rule.kind == "threshold":
            assert flat is not None
            return np.array([rule.holds(final=row[self.slice]) for row in flat])
        return np.array([bool(d) and bool(info.get("TimeLimit.truncated", False)) for d, info in zip(dones, infos)])

    def finish(self, i: int, info: dict[str, Any], flat_row: np.ndarray | None) -> bool | None:
        """Env ``i``'s episode ended (``info`` of its last step): did it succeed?"""
        hit = bool(self.hit[i])
        self.hit[i] = False
        if self.rule is None:
            return None
        terminated = not info.get("TimeLimit.truncated", False)
        final = None if flat_row is None or not self.needs_state else np.asarray(flat_row)[self.slice]
        return self.rule.holds(info_hit=hit, terminated=terminated, final=final)


class RewardVecEnv(VecEnvWrapper):
    """Compute a reward program for a whole SB3 ``VecEnv`` batch; record per-episode statistics.

    With ``reward=None`` the env's own reward passes through and only the statistics are recorded, so
    native and program runs report the same fields.

    :param venv: a VecEnv whose sub-envs are wrapped in :class:`StateCapture` when the card has
        simulator fields
    :param extractor: the card's :class:`StateExtractor`
    :param reward: the bound reward program, or None for the env's own reward
    :param max_cost_fraction: stop (raise ``RewardProgramError`` rule ``cost``) when computing rewards
        takes more than this many times the env's own step time; None: no limit (evaluation envs)
    :param sparse: the reward is 1 where the card's success rule holds at the step, else 0 (instead of a
        program's or the env's own); needs a rule
    """

    def __init__(self, venv: VecEnv, extractor: StateExtractor, reward: CompiledReward | None = None,
                 max_cost_fraction: float | None = None, sparse: bool = False):
        super().__init__(venv)
        if sparse and (reward is not None or extractor.card.success_rule is None):
            raise ValueError("a sparse reward replaces the program's and needs the card's success rule")
        self.sparse = sparse
        self.cost = RewardCost()
        self.max_cost_fraction = max_cost_fraction
        self.extractor = extractor
        self.reward = reward
        card = extractor.card
        self.success = EpisodeSuccess(card.success_rule, extractor, self.num_envs)
        self._actions: np.ndarray | None = None
        n = self.num_envs
        self._env_return = np.zeros(n)
        self._program_return = np.zeros(n)
        self._length = np.zeros(n, dtype=np.int64)
        self._components: dict[str, np.ndarray] = {}

    def reset(self) -> Any:
        self._env_return[:] = 0
        self._program_return[:] = 0
        self._length[:] = 0
        for v in self._components.values():
            v[:] = 0
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        start = time.perf_counter()
        obs, env_reward, dones, infos = self.venv.step_wait()
        stepped = time.perf_counter()
        done_idx = np.flatnonzero(dones)
        flat = None
        if self.reward is not None or self.success.needs_state:
            flat, state_obs = step_states(self.extractor, obs, dones, infos)  # terminal states, not reset ones
        if self.sparse:
            reward = self.success.now(infos, flat, dones).astype(np.float32)
            self._program_return += reward
            self._components.setdefault("success", np.zeros(self.num_envs))[:] += reward
            for info, r in zip(infos, env_reward.tolist()):
                info["env_reward"] = r
        elif self.reward is not None:
            total, comps = self.reward(self.extractor.view(flat, state_obs), np.asarray(self._actions))
            reward = np.asarray(total, dtype=np.float32)
            self._program_return += reward
            for name, value in comps.items():
                acc = self._components.get(name)
                if acc is None:
                    acc = self._components[name] = np.zeros(self.num_envs)
                acc += value
            for info, r in zip(infos, env_reward.tolist()):
                info["env_reward"] = r
            self._account(stepped - start, time.perf_counter() - stepped)
        else:
            reward = env_reward
        self._env_return += env_reward
        self._length += 1
        self.success.update(infos)
        for i in map(int, done_idx):
            infos[i]["episode_stats"] = {
                "env_return": float(self._env_return[i]),
                "program_return": float(self._program_return[i]) if self.reward is not None or self.sparse else None,
                "length": int(self._length[i]),
                "success": self.success.finish(i, infos[i], None if flat is None else flat[i]),
                "components": {k: float(v[i]) for k, v in self._components.items()},
            }
            self._env_return[i] = self._program_return[i] = 0.0
            self._length[i] = 0
            for v in self._components.values():
                v[i] = 0.0
        return obs, reward, dones, infos


    def _account(self, env_s: float, reward_s: float) -> None:
        cost = self.cost
        cost.env_s += env_s
        cost.reward_s += reward_s
        cost.steps += 1
        limit = self.max_cost_fraction
        if limit is not None and cost.steps >= COST_MIN_STEPS and cost.steps % 100 == 0 and cost.fraction > limit:
            raise RewardProgramError(
                "cost", f"the reward program takes {cost.fraction:.0f}x the env's own step time "
                f"({cost.us_per_step:.0f} us per step of {self.num_envs} envs, measured over {cost.steps} steps); "
                f"the limit is {limit:g}x: write it with batched array operations, without Python loops over the batch")


class ProgramReward(gym.Wrapper):
    """A single gymnasium env whose reward is a reward program's (the env's own is in ``info``).

    :param env: a gymnasium env made from the card (raw, not yet wrapped in :class:`StateCapture`)
    :param extractor: the card's :class:`StateExtractor`
    :param reward: the bound reward program
    """

    def __init__(self, env: gym.Env, extractor: StateExtractor, reward: CompiledReward):
        super().__init__(env)
        self.extractor = extractor
        self.reward = reward

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        sim = self.extractor.sim_vector(self.env)[None] if self.extractor.has_sim else None
        obs_b = np.asarray(obs)[None]
        total, comps = self.reward(self.extractor.view(self.extractor.batch(obs_b, sim), obs_b), np.asarray(action)[None])
        info["env_reward"] = float(env_reward)
        info["reward_components"] = {k: float(v[0]) for k, v in comps.items()}
        return obs, float(total[0]), terminated, truncated, info


class ProgramRewardVector(gym.vector.VectorWrapper):
    """A gymnasium vector env (``NEXT_STEP`` autoreset, sub-envs in :class:`StateCapture`) whose reward
    is a reward program's, computed in one batched call per step.

    In ``NEXT_STEP`` mode the step after an episode end only resets that env; its reward is 0, as the
    env's own reward is.
    """

    def __init__(self, env: gym.vector.VectorEnv, extractor: StateExtractor, reward: CompiledReward):
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode != gym.vector.AutoresetMode.NEXT_STEP:
            raise ValueError(f"ProgramRewardVector supports the NEXT_STEP autoreset mode, not {mode}")
        self.extractor = extractor
        self.reward = reward
        self._resetting = np.zeros(self.num_envs, dtype=bool)

    def reset(self, **kwargs: Any) -> Any:
        self._resetting[:] = False
        return self.env.reset(**kwargs)

    def step(self, actions: Any) -> Any:
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        sim = np.asarray(info[SIM_KEY]) if self.extractor.has_sim else None
        total, comps = self.reward(self.extractor.view(self.extractor.batch(obs, sim), obs), np.asarray(actions))
        reward = np.where(self._resetting, 0.0, np.asarray(total, dtype=np.float64))
        info = dict(info, env_reward=env_reward, reward_components={k: np.asarray(v) for k, v in comps.items()})
        self._resetting = np.logical_or(terminated, truncated)
        return obs, reward, terminated, truncated, info
