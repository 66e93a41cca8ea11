"""Deterministic evaluation of a trained SB3 policy, and the typed results of a trial.

The result types live in :mod:`rewardlab.types` (the lowest module, so the store can name them) and
are re-exported here, where trainers produce them.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import VecEnv

from rewardlab.types import CurvePoint, EvalResult, TrialResult

__all__ = ["CurvePoint", "EVAL_SEED_BASE", "EvalResult", "TrialResult", "eval_seed", "evaluate"]

#: Evaluation envs never share seeds with training envs: those of training seed ``s`` start at
#: ``EVAL_SEED_BASE + 100 * s``, so every reward source trained with seed ``s`` meets the same goals.
EVAL_SEED_BASE = 10_000


def eval_seed(seed: int) -> int:
    """The first evaluation env's seed for training seed ``seed``."""
    return EVAL_SEED_BASE + 100 * seed


def evaluate(model: Any, venv: VecEnv, episodes: int, deterministic: bool = True) -> EvalResult:
    """Run exactly one episode in each of ``venv``'s envs (``episodes`` of them) and collect the
    ``episode_stats`` that :class:`~rewardlab.wrappers.RewardVecEnv` records.

    :param model: anything with SB3's ``predict(obs, deterministic)``
    :param venv: ``episodes`` seeded envs whose chain contains a ``RewardVecEnv``
    """
    stats: list[dict[str, Any] | None] = [None] * episodes
    obs = venv.reset()
    while any(s is None for s in stats):
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, _, dones, infos = venv.step(action)
        for i, done in enumerate(dones):
            if done and stats[i] is None:
                stats[i] = infos[i]["episode_stats"]
    done = [s for s in stats if s is not None]
    return EvalResult(
        env_return=[s["env_return"] for s in done],
        program_return=[s["program_return"] for s in done],
        success=[s["success"] for s in done],
        length=[s["length"] for s in done],
        components=[s["components"] for s in done],
    )
