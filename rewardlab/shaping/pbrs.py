"""Potential-based reward shaping (Ng, Harada & Russell, ICML 1999).

The shaping term is ``F(s, a, s') = γ Φ(s') − Φ(s)``; adding it to any reward leaves the optimal
policies unchanged. Here the potential Φ is a reward program (its ``compute_dense_reward`` returns
Φ of each state, batched, checked in the sandbox like any program), or ``potential: V*``, the optimal
values of a tabular task computed by its teacher (EXPRD's PBRS baseline, Devidze et al. NeurIPS'21).
The terminal potential is zero only when the env *terminates* the episode (an absorbing state); on
a time-limit truncation the episode would have gone on, so ``γ Φ(s')`` is kept
(Pardo et al., 2018, "Time limits in reinforcement learning").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.program import CompiledReward, load_program
from rewardlab.shaping.base import Shaper, TableShaper
from rewardlab.state import StateExtractor, fields_used_by
from rewardlab.wrappers import SIM_KEY, step_states


class PotentialShaping(Shaper):
    """PBRS with a potential program.

    :param params: ``potential``: the potential program (a ``.py`` path or its source);
        ``gamma``: the discount of F (default: the learner's, which the guarantee needs);
        ``scale``: a factor on Φ (default 1)
    """

    name = "pbrs"

    @classmethod
    def for_params(cls, params: dict[str, Any]) -> type[Shaper]:
        # Φ = V* is a table of a tabular task, not a program: the same name, another class
        return OptimalValuePotential if params.get("potential") in OPTIMAL_VALUE_NAMES else cls

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - {"potential", "gamma", "scale"}
        if unknown:
            raise UserError(f"shaper 'pbrs' takes potential, gamma and scale, not {', '.join(sorted(unknown))}")
        if "potential" not in params:
            raise UserError("shaper 'pbrs' needs a potential: {name: pbrs, potential: phi.py}")
        self.program = load_program(str(params["potential"]), origin="pbrs-potential")
        self.gamma = float(params.get("gamma", gamma))
        self.scale = float(params.get("scale", 1.0))

    def fields_used(self) -> set[str]:
        return set(fields_used_by(self.card, self.program.source))

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        return PotentialShapingVecEnv(venv, extractor, self.program.bind(self.card), self.gamma, self.scale)


class PotentialShapingVecEnv(VecEnvWrapper):
    """Adds ``γ Φ(s') − Φ(s)`` to a VecEnv's reward; ``info["unshaped_reward"]`` keeps the reward
    before shaping, and each episode's ``episode_stats`` gains the component ``pbrs`` (its sum).

    :param venv: the training env (sub-envs in ``StateCapture`` when Φ reads simulator fields)
    :param extractor: extracts the fields Φ reads
    :param potential: the bound potential program
    :param gamma: discount of the shaping term
    :param scale: factor on Φ
    """

    def __init__(self, venv: VecEnv, extractor: StateExtractor, potential: CompiledReward, gamma: float,
                 scale: float = 1.0):
        super().__init__(venv)
        self.extractor = extractor
        self.potential = potential
        self.gamma = gamma
        self.scale = scale
        self._phi = np.zeros(self.num_envs)
        self._sum = np.zeros(self.num_envs)

    def _phi_of(self, obs: np.ndarray, sim: np.ndarray | None) -> np.ndarray:
        flat = self.extractor.batch(obs, sim)
        actions = np.zeros((len(flat), *(self.action_space.shape or ())))
        total, _ = self.potential(self.extractor.view(flat, obs), actions)
        return self.scale * np.asarray(total, dtype=np.float64)

    def _reset_sim(self) -> np.ndarray | None:
        if not self.extractor.has_sim:
            return None
        return np.stack([info[SIM_KEY] for info in self.venv.reset_infos])

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._phi = self._phi_of(np.asarray(obs), self._reset_sim())
        self._sum[:] = 0.0
        return obs

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        flat_next, state_obs = step_states(self.extractor, obs, dones, infos)
        actions = np.zeros((len(flat_next), *(self.action_space.shape or ())))
        phi_next = self.scale * np.asarray(self.potential(self.extractor.view(flat_next, state_obs), actions)[0],
                                           dtype=np.float64)
        terminated = np.array([bool(d) and not info.get("TimeLimit.truncated", False) for d, info in zip(dones, infos)])
        shaping = np.where(terminated, 0.0, self.gamma * phi_next) - self._phi
        self._sum += shaping
        for i, info in enumerate(infos):
            info["unshaped_reward"] = float(reward[i])
        done_idx = np.flatnonzero(dones)
        if done_idx.size:
            # the next step starts from the reset state, whose potential replaces the terminal one
            reset_obs = np.asarray(obs)
            sim = self._reset_sim()
            phi_reset = self._phi_of(reset_obs, sim)
            phi_next = np.where(np.asarray(dones, dtype=bool), phi_reset, phi_next)
            for i in map(int, done_idx):
                stats = infos[i].get("episode_stats")
                if stats is not None:
                    stats["components"] = {**stats.get("components", {}), "pbrs": float(self._sum[i])}
                self._sum[i] = 0.0
        self._phi = phi_next
        return obs, (np.asarray(reward, dtype=np.float64) + shaping).astype(np.float32), dones, infos


#: How a spec names Φ = V*: ``{name: pbrs, potential: V*}``.
OPTIMAL_VALUE_NAMES = ("V*", "optimal_values")


class OptimalValuePotential(TableShaper):
    """PBRS with Φ = V* of a tabular task (EXPRD's dense PBRS baseline): the learner's reward is
    ``R̄(s,a) + γ Σ_s' T(s'|s,a) V*(s') − V*(s)``, with V* = 0 on absorbing states.

    Deviation (EXPRD's code does the same): the expected shaping term over s' replaces the sampled one
    (:func:`rewardlab.shaping.teachers.potential_shaping_term`); the optimal policies are unchanged.

    :param params: ``potential: V*``; ``scale`` (default 1)
    """

    name = "pbrs"
    mode = "additive"

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - {"potential", "scale"}
        if unknown:
            raise UserError(f"shaper 'pbrs' with potential V* takes scale, not {', '.join(sorted(unknown))} "
                            "(the model's own discount is used)")
        self.scale = float(params.get("scale", 1.0))

    def design(self, mdp: Any) -> np.ndarray:
        from rewardlab.shaping.teachers import Teacher, potential_shaping_term

        return potential_shaping_term(mdp, self.scale * Teacher.solve(mdp).V)
