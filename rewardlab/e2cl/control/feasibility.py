"""E2CL for continuous control under action-feasibility feedback (§7(b) of
``shared/research/reward_design_algorithms.md``): the household loop (propose -> predict feedback ->
correct -> re-check) for an SB3 policy on a MuJoCo arm.

- **Feedback**: :class:`JointSpeedFeedback` marks a step infeasible when it drives the fastest actuated
  joint above ``v_max`` *and* faster than before the step (a joint-speed limit the task itself does not
  impose; an action that brakes a joint already over the limit is feasible, so every state has a
  feasible action); a dry run on a saved MuJoCo state (:meth:`JointSpeedFeedback.check`) answers
  without changing the episode.
- **Data**: teacher-free (the policy's own actions along its rollouts) and teacher-guided (random
  actions swapped in at the same states); every infeasible action gets a *retry that succeeded*: the
  largest of ``0.75a, 0.5a, 0.25a, 0`` the env accepts.
- **Models**: a feasibility model ``f(s, a) -> P(infeasible)`` and a corrector ``c(s, a) -> a'``, small
  MLPs (torch).
- **Inference**: :class:`SpeculativeCorrection` wraps the env: if ``f(s, a) > 0.5`` it proposes
  ``a' = c(s, a)`` and uses it when ``f(s, a') <= 0.5`` (else keeps ``a``: the paper's mask-and-resample
  fallback is not implemented, a labelled deviation); it counts how often corrections fire and are taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewardlab.errors import UserError

#: Scalings of an infeasible action tried, largest first, for the corrector's target.
RETRY_SCALES = (0.75, 0.5, 0.25, 0.0)


class JointSpeedFeedback(gym.Wrapper):
    """Feasibility feedback for a MuJoCo env: ``info["violation"]`` is True when the step leaves the
    fastest of the first ``joints`` joints above ``v_max`` (rad/s) and faster than before.

    :param env: a gymnasium MuJoCo env (``Reacher-v5``: two actuated hinge joints)
    :param v_max: the speed limit in rad/s
    :param joints: how many leading ``qvel`` entries are limited
    :raises UserError: the env is not a MuJoCo env, or ``v_max`` is not positive
    """

    def __init__(self, env: gym.Env, v_max: float = 10.0, joints: int = 2):
        super().__init__(env)
        if not hasattr(env.unwrapped, "do_simulation"):
            name = env.unwrapped.spec.id if env.unwrapped.spec else type(env.unwrapped).__name__
            raise UserError(f"joint-speed feedback needs a MuJoCo env; {name} is not one")
        if v_max <= 0:
            raise UserError(f"v_max must be positive (got {v_max})")
        self.v_max, self.joints = float(v_max), joints

    def _speed(self) -> float:
        return float(np.abs(self.env.unwrapped.data.qvel[: self.joints]).max())  # type: ignore[attr-defined]

    def check(self, action: np.ndarray) -> bool:
        """Whether ``action`` would violate the limit from the current state (the state is restored)."""
        u: Any = self.env.unwrapped
        qpos, qvel, time = u.data.qpos.copy(), u.data.qvel.copy(), float(u.data.time)
        before = self._speed()
        u.do_simulation(np.asarray(action, dtype=np.float64), u.frame_skip)
        violated = self._violates(before)
        u.set_state(qpos, qvel)
        u.data.time = time
        return violated

    def _violates(self, before: float) -> bool:
        after = self._speed()
        return after > self.v_max and after > before

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        before = self._speed()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["violation"] = self._violates(before)
        return obs, reward, terminated, truncated, info


def retry(feedback: JointSpeedFeedback, action: np.ndarray) -> np.ndarray | None:
    """The largest scaling of an infeasible ``action`` the env accepts (None: none of them)."""
    for scale in RETRY_SCALES:
        candidate = scale * np.asarray(action)
        if not feedback.check(candidate):
            return candidate
    return None


@dataclass
class FeasibilityData:
    """``states`` (N, S), ``actions`` (N, A), ``violated`` (N,) and the corrections ``(s, a) -> a'``."""

    states: np.ndarray
    actions: np.ndarray
    violated: np.ndarray
    fix_states: np.ndarray
    fix_actions: np.ndarray
    fix_targets: np.ndarray


def collect(policy: Any, feedback: JointSpeedFeedback, steps: int, seed: int) -> FeasibilityData:
    """Teacher-free (the policy's sampled action) and teacher-guided (a random action at the same state)
    feasibility records along ``steps`` steps of the policy's rollouts."""
    rng = np.random.default_rng(seed)
    S, A, V, FS, FA, FT = [], [], [], [], [], []
    obs, _ = feedback.reset(seed=seed)
    space = feedback.action_space
    assert isinstance(space, gym.spaces.Box)
    for _ in range(steps):
        own, _ = policy.predict(obs, deterministic=False)
        for a in (np.asarray(own, dtype=np.float64), rng.uniform(space.low, space.high)):
            bad = feedback.check(a)
            S.append(obs)
            A.append(a)
            V.append(bad)
            if bad and (fix := retry(feedback, a)) is not None:
                FS.append(obs)
                FA.append(a)
                FT.append(fix)
        obs, _, terminated, truncated, _ = feedback.step(own)
        if terminated or truncated:
            obs, _ = feedback.reset()
    f32 = np.float32
    return FeasibilityData(np.array(S, f32), np.array(A, f32), np.array(V, f32), np.array(FS, f32).reshape(-1, len(obs)),
                           np.array(FA, f32).reshape(-1, space.shape[0]), np.array(FT, f32).reshape(-1, space.shape[0]))


def _mlp(inp: int, out: int, width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out))


def train_models(data: FeasibilityData, seed: int, epochs: int = 30, lr: float = 3e-3) -> tuple[nn.Module, nn.Module]:
    """The feasibility model f (binary cross-entropy) and the corrector c (mean squared error), full-batch Adam."""
    torch.manual_seed(seed)
    s_dim, a_dim = data.states.shape[1], data.actions.shape[1]
    f, c = _mlp(s_dim + a_dim, 1), _mlp(s_dim + a_dim, a_dim)
    x = torch.from_numpy(np.concatenate([data.states, data.actions], 1))
    y = torch.from_numpy(data.violated)
    opt = torch.optim.Adam(f.parameters(), lr=lr)
    for _ in range(epochs * 10):
        loss = nn.functional.binary_cross_entropy_with_logits(f(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if len(data.fix_states):
        xc = torch.from_numpy(np.concatenate([data.fix_states, data.fix_actions], 1))
        yc = torch.from_numpy(data.fix_targets)
        opt = torch.optim.Adam(c.parameters(), lr=lr)
        for _ in range(epochs * 10):
            loss = nn.functional.mse_loss(torch.tanh(c(xc)), yc)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return f.eval(), c.eval()


class SpeculativeCorrection(gym.Wrapper):
    """Speculative inference as a wrapper: an action the feasibility model rejects is replaced by the
    corrector's when the model accepts that one (see module docstring).

    :param env: the env (its last observation is the state the models see)
    :param feasibility: ``f``, logits of P(infeasible) from ``[s, a]``
    :param corrector: ``c``, a corrected action (through tanh) from ``[s, a]``
    """

    def __init__(self, env: gym.Env, feasibility: nn.Module, corrector: nn.Module):
        super().__init__(env)
        self.f, self.c = feasibility, corrector
        self.fired = self.accepted = self.steps = 0
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs, dtype=np.float32)
        return obs, info

    @torch.no_grad()
    def _infeasible(self, a: np.ndarray) -> bool:
        assert self._obs is not None
        return bool(self.f(torch.from_numpy(np.concatenate([self._obs, a]).astype(np.float32))[None])[0, 0] > 0)

    @torch.no_grad()
    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float32)
        corrected = False
        if self._infeasible(a):
            self.fired += 1
            assert self._obs is not None
            fix = torch.tanh(self.c(torch.from_numpy(np.concatenate([self._obs, a]))[None]))[0].numpy()
            if not self._infeasible(fix):
                a, corrected = fix, True
                self.accepted += 1
        self.steps += 1
        obs, reward, terminated, truncated, info = self.env.step(a)
        self._obs = np.asarray(obs, dtype=np.float32)
        info["corrected"] = corrected
        return obs, reward, terminated, truncated, info


def evaluate(policy: Any, env: gym.Env, episodes: int, seed: int) -> dict[str, float | None]:
    """Deterministic episodes: ``violation_rate`` (share of steps over the limit), and on envs that report
    a distance to a target (Reacher's ``info["reward_dist"]``) ``final_distance`` (m, at the last step)
    and ``success`` (final distance below 0.05 m); None where the env reports none."""
    violations, steps, dist = 0, 0, []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            violations += bool(info["violation"])
            steps += 1
            done = terminated or truncated
        if "reward_dist" in info:
            dist.append(-float(info["reward_dist"]))
    if not dist:
        return {"violation_rate": violations / steps, "final_distance": None, "success": None}
    return {"violation_rate": violations / steps, "final_distance": float(np.mean(dist)),
            "success": float(np.mean(np.array(dist) < 0.05))}


class NormalizedPolicy:
    """A trained policy that acts on raw env observations: the trial's frozen ``VecNormalize``
    statistics are applied before ``predict``, as in training (without them a normalised policy sees
    its observations at the wrong scale).

    :param policy: the SB3 model
    :param trial_dir: its trial directory (``vecnormalize.pkl`` when the preset normalised observations)
    """

    def __init__(self, policy: Any, trial_dir: Path):
        from rewardlab.training.normalization import load_normalization

        self.policy, self.norm = policy, load_normalization(trial_dir)

    def predict(self, obs: Any, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        shown = obs if self.norm is None else self.norm.apply(np.asarray(obs, dtype=np.float64)).astype(np.float32)
        return self.policy.predict(shown, deterministic=deterministic)


def feasibility_experiment(card_id: str, ppo_steps: int, data_steps: int, seeds: list[int], v_max: float,
                           episodes: int, run_dir: Path) -> list[dict[str, Any]]:
    """Per seed: train PPO on the card with the env's reward (the ``sb3`` trainer), collect feasibility
    data with it, fit ``f`` and ``c``, and evaluate the same policy plain and with
    :class:`SpeculativeCorrection` on the same seeded episodes.

    :return: one row per seed: ``seed``, ``plain`` and ``corrected`` (:func:`evaluate`'s metrics), the
        correction counts and the data sizes
    :raises UserError: bad sizes, or a card whose env is not MuJoCo
    """
    from stable_baselines3 import PPO

    from rewardlab.cards import load_card
    from rewardlab.paths import safe_name
    from rewardlab.sims.base import make_env
    from rewardlab.training import train
    from rewardlab.training.evaluation import eval_seed

    if min(ppo_steps, data_steps, episodes) <= 0:
        raise UserError("ppo_steps, data_steps and episodes must be positive")
    card = load_card(card_id)
    JointSpeedFeedback(make_env(card), v_max).close()  # a bad limit or a non-MuJoCo card: refused before training
    rows = []
    for seed in seeds:
        # a finished PPO trial of the same card, seed and budget is reused
        trial = run_dir / f"ppo-{safe_name(card.id)}-s{seed}-{ppo_steps}"
        if not (trial / "model.zip").is_file():
            train(card, "env", "ppo", steps=ppo_steps, seed=seed, run_dir=trial, eval_episodes=2)
        policy = NormalizedPolicy(PPO.load(trial / "model.zip", device="cpu"), trial)
        data = collect(policy, JointSpeedFeedback(make_env(card, seed=seed), v_max), data_steps, seed)
        f, c = train_models(data, seed)
        plain = evaluate(policy, JointSpeedFeedback(make_env(card), v_max), episodes, eval_seed(seed))
        wrapped = SpeculativeCorrection(JointSpeedFeedback(make_env(card), v_max), f, c)
        corrected = evaluate(policy, wrapped, episodes, eval_seed(seed))
        rows.append({"seed": seed, "plain": plain, "corrected": corrected,
                     "fired": wrapped.fired / max(wrapped.steps, 1), "accepted": wrapped.accepted / max(wrapped.steps, 1),
                     "records": int(len(data.states)), "infeasible_share": float(data.violated.mean()),
                     "corrections": int(len(data.fix_states))})
    return rows
