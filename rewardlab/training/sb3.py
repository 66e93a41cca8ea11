"""The ``sb3`` trainer: stable-baselines3 (PPO, SAC, TD3, DQN, and rewardlab's neural REINFORCE) on a card's
env with the env's own reward, a reward program, or a shaped reward.

:meth:`SB3Trainer.train` reads top to bottom: check the program in the sandbox, build the vector env
(``StateCapture`` per env -> :class:`~rewardlab.wrappers.RewardVecEnv` -> shaper -> ``VecMonitor``
-> optional ``VecNormalize``), load the preset from ``agents/<simulator>.yaml``, learn with periodic
deterministic evaluations (the learning curve), save a checkpoint, and evaluate the final policy over
fixed, seeded episodes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize

from rewardlab.cards import EnvCard
from rewardlab.config import TrainConfig
from rewardlab.errors import UserError
from rewardlab.moe.sb3 import moe_callbacks
from rewardlab.program import RewardProgram
from rewardlab.randomization import DomainRandomization, RandomizationRanges, parse_ranges
from rewardlab.runtime import limit_threads
from rewardlab.shaping.base import Shaper, make_shaper
from rewardlab.sims.base import get_simulator, make_env
from rewardlab.sources import ResolvedReward, ShapedReward, is_sparse, program_of
from rewardlab.state import StateExtractor, fields_used_by
from rewardlab.training.callbacks import LearningCurve
from rewardlab.training.evaluation import eval_seed
from rewardlab.training.policies import check_extractor_kwargs, resolve_policy
from rewardlab.training.presets import ALGORITHMS, load_preset, minimum_steps, policy_kwargs
from rewardlab.types import TrialResult
from rewardlab.wrappers import MAX_COST_FRACTION, WARN_COST_FRACTION, RewardVecEnv, StateCapture


class SlowRewardWarning(UserWarning):
    """The reward program cost more than the env's own step during training."""


def make_vec_env(card: EnvCard, extractor: StateExtractor, program: RewardProgram | None, n_envs: int, seed: int,
                 monitor: bool = True, max_cost_fraction: float | None = None, sparse: bool = False,
                 randomization: RandomizationRanges | None = None) -> VecEnv:
    """``DummyVecEnv`` of ``n_envs`` card envs -> :class:`RewardVecEnv` (-> ``VecMonitor``).

    Sub-env ``i`` is seeded ``seed + i``. DummyVecEnv, since SubprocVecEnv is slower on 2 cores.

    :param max_cost_fraction: the reward path's time bound, relative to the env step (training envs)
    :param sparse: reward 1 where the card's success rule holds (:data:`rewardlab.sources.SPARSE`)
    :param randomization: each sub-env's physics drawn from these ranges at every reset (its draws
        seeded ``seed + i``); the state the reward reads is the randomised one
    """

    def factory(i: int) -> Callable[[], Any]:
        def make() -> Any:
            env = make_env(card, seed=seed + i)
            if randomization is not None:
                env = DomainRandomization(env, randomization, seed=seed + i)
            return StateCapture(env, extractor) if extractor.has_sim else env
        return make

    venv: VecEnv = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    reward = program.bind(card) if program is not None else None
    venv = RewardVecEnv(venv, extractor, reward, max_cost_fraction=max_cost_fraction, sparse=sparse)
    return VecMonitor(venv) if monitor else venv


def _eval_env(card: EnvCard, extractor: StateExtractor, program: RewardProgram | None, episodes: int,
              seed: int, train_env: VecEnv, sparse: bool = False) -> VecEnv:
    """Evaluation envs: fixed seeds per training seed (so every reward source meets the same goals),
    and the training env's observation normalisation, frozen."""
    venv = make_vec_env(card, extractor, program, episodes, eval_seed(seed), monitor=False, sparse=sparse)
    if isinstance(train_env, VecNormalize):
        venv = VecNormalize(venv, training=False, norm_obs=train_env.norm_obs, norm_reward=False)
        venv.obs_rms = train_env.obs_rms
    return venv


class BudgetWarning(UserWarning):
    """The learner runs a budget or warm-up other than the one asked for (said once, in one line)."""


def build_agent(
    card: EnvCard,
    extractor: StateExtractor,
    program: RewardProgram | None,
    algo: str,
    seed: int,
    steps: int,
    preset_overrides: dict[str, Any] | None = None,
    tensorboard_log: Path | None = None,
    shaper: Shaper | None = None,
    max_cost_fraction: float | None = MAX_COST_FRACTION,
    sparse: bool = False,
) -> tuple[Any, VecEnv]:
    """The SB3 model and its training env, from the card's preset (what :meth:`SB3Trainer.train` and
    the benchmarks use).

    :param steps: the training budget; ``learning_starts`` is capped to a fifth of it, so a short
        budget still learns something
    :param shaper: added to the reward after the program (before normalisation)
    :param sparse: train on the sparse success reward (no program)
    :param preset_overrides: may hold ``randomization`` (domain randomisation ranges of the training
        envs, as in a ranges YAML file); evaluation envs stay nominal
    :return: ``(model, env)``; ``env`` is a ``VecNormalize`` when the preset says ``normalize``
    """
    from stable_baselines3 import DQN, PPO, SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    params = load_preset(card, algo, preset_overrides)
    ranges = params.pop("randomization", None)
    randomization = None if ranges is None else parse_ranges(yaml.safe_dump(ranges), "randomization")
    n_envs = int(params.pop("n_envs", 1))
    normalize = bool(params.pop("normalize", False))
    policy = resolve_policy(params.pop("policy", "MlpPolicy"))
    params["policy_kwargs"] = policy_kwargs(params.get("policy_kwargs"))
    if isinstance(params.get("action_noise"), dict):
        sigma = float(params["action_noise"].get("sigma", 0.1))
        params["action_noise"] = NormalActionNoise(np.zeros(card.action.shape), sigma * np.ones(card.action.shape))
    if "learning_starts" in params:
        preset_starts = int(params["learning_starts"])
        params["learning_starts"] = min(preset_starts, max(steps // 5, 100))
        if params["learning_starts"] < preset_starts:
            warnings.warn(f"{algo.upper()}'s warm-up (learning_starts) cut from the preset's {preset_starts:,} to "
                          f"{params['learning_starts']:,} steps, a fifth of the {steps:,}-step budget",
                          BudgetWarning, stacklevel=2)
    if algo == "ppo":
        rollout = int(params.get("n_steps", 2048)) * n_envs
        if steps % rollout:
            warnings.warn(f"PPO trains in whole rollouts of {rollout:,} steps (n_steps x {n_envs} envs): the "
                          f"{steps:,}-step budget runs {-(-steps // rollout) * rollout:,} steps", BudgetWarning,
                          stacklevel=2)

    env = make_vec_env(card, extractor, program, n_envs, seed, monitor=False, max_cost_fraction=max_cost_fraction,
                       sparse=sparse, randomization=randomization)
    if shaper is not None:
        env = shaper.wrap(env, extractor)
    env = VecMonitor(env)
    if normalize:
        env = VecNormalize(env, norm_obs=True, norm_reward=True, gamma=params.get("gamma", 0.99))
    from rewardlab.training.reinforce import REINFORCE

    algo_cls = {"ppo": PPO, "sac": SAC, "td3": TD3, "dqn": DQN, "reinforce": REINFORCE}[algo]
    try:
        model = algo_cls(policy, env, seed=seed, device="cpu", verbose=0,
                         tensorboard_log=str(tensorboard_log) if tensorboard_log else None, **params)
    except TypeError as e:
        raise UserError(f"invalid {algo} hyperparameter: {e}") from None
    return model, env


def _reward_vec_env(env: VecEnv) -> RewardVecEnv | None:
    while not isinstance(env, RewardVecEnv):
        inner = getattr(env, "venv", None)
        if inner is None:
            return None
        env = inner
    return env


class SB3Trainer:
    """stable-baselines3's PPO, SAC, TD3 and DQN, and neural REINFORCE (:mod:`rewardlab.training.reinforce`),
    with rewardlab's presets (registered as ``sb3``)."""

    name = "sb3"
    algorithms = ALGORITHMS

    def validate(self, card: EnvCard, config: TrainConfig) -> None:
        """Refuse settings that would not train: an unknown algorithm or preset, bad randomisation
        ranges, a budget below one PPO rollout or the off-policy warm-up, an algorithm for the other kind
        of action space. An evaluation interval longer than the budget is fine (the final evaluation
        still runs)."""
        discrete = card.action.type == "discrete"
        if config.algo == "dqn" and not discrete:
            raise UserError(f"dqn needs discrete actions; {card.label} has {card.action.type} actions (use sac or td3)")
        if config.algo in ("sac", "td3") and discrete:
            raise UserError(f"{config.algo} needs continuous actions; {card.label} has discrete actions (use dqn or ppo)")
        params = load_preset(card, config.algo, config.overrides)
        if config.algo == "reinforce" and not discrete and float(params.get("epsilon", 0.05)) > 0:
            raise UserError(f"the sb3 trainer's reinforce mixes epsilon {params.get('epsilon', 0.05)} uniform actions, "
                            f"which needs discrete actions; {card.label} has {card.action.type} actions (set epsilon: 0)")
        kwargs = policy_kwargs(params.get("policy_kwargs"))  # unknown names: one line with a "did you mean"
        extractor = kwargs.get("features_extractor_class")
        if extractor is not None:
            check_extractor_kwargs(extractor, dict(kwargs.get("features_extractor_kwargs") or {}))
        if params.get("randomization") is not None:  # bad ranges: one line before anything is made
            parse_ranges(yaml.safe_dump(params["randomization"]), "randomization")
        least, why = minimum_steps(config.algo, params, card.episode_steps)
        if config.budget.steps < least:
            raise UserError(f"steps {config.budget.steps} is less than {why} on {card.label}: nothing would be "
                            f"learnt; give at least {least}")

    def train(
        self,
        card: EnvCard,
        reward: ResolvedReward,
        config: TrainConfig,
        run_dir: Path,
        callbacks: Sequence[Any] = (),
        progress: Callable[[int, int], None] | None = None,
        check: bool = True,
    ) -> TrialResult:
        """Train one agent and evaluate it; write the model, checkpoints, TensorBoard logs and
        ``result.json`` into ``run_dir``.

        :param card: the task
        :param reward: the resolved reward (:func:`rewardlab.sources.resolve_source`)
        :param config: algorithm, seed, budget, evaluation, hyperparameter overrides
        :param run_dir: an existing, empty directory of this trial
        :param callbacks: SB3 callbacks to add
        :param progress: called with ``(steps_done, steps)`` as training goes
        :param check: run the sandbox trial on the program first (leave on for untrusted code)
        """
        limit_threads()
        from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

        start = time.perf_counter()
        run_dir = Path(run_dir)
        self.validate(card, config)
        program = program_of(reward)
        shaped = reward if isinstance(reward, ShapedReward) else None
        if program is not None:
            (run_dir / "reward.py").write_text(program.source)
            if check:
                from rewardlab.checks import check_program

                check_program(program, card, seed=config.seed).raise_if_failed()
        shaper = None
        if shaped is not None:
            gamma = float(load_preset(card, config.algo, config.overrides).get("gamma", 0.99))
            shaper = make_shaper(shaped.shaper.name, shaped.shaper.params, card, gamma,
                                 get_simulator(card.simulator).capabilities(card))
        fields = set(fields_used_by(card, program.source)) if program is not None else set()
        if shaper is not None:
            fields |= shaper.fields_used()
        if card.success_rule is not None:
            fields |= card.success_rule.fields
        extractor = StateExtractor(card, fields)

        steps, algo, seed = config.budget.steps, config.algo, config.seed
        sparse = is_sparse(reward)
        model, env = build_agent(card, extractor, program, algo, seed, steps, config.overrides, run_dir / "tb", shaper,
                                 sparse=sparse)
        if shaper is not None:  # what a shaper designed (EXPRD's program), next to the model
            shaper.write_artifacts(run_dir)
        normalize = isinstance(env, VecNormalize)
        eval_env = _eval_env(card, extractor, program, config.evaluation.episodes, seed, env, sparse)
        curve = LearningCurve(eval_env, config.evaluation.episodes, config.evaluation.every or max(steps // 10, 1),
                              steps, progress)
        checkpoints = CheckpointCallback(save_freq=max(steps // (4 * env.num_envs), 1),
                                         save_path=str(run_dir / "checkpoints"), name_prefix=algo,
                                         save_vecnormalize=normalize)
        extra = list(callbacks) + (shaper.callbacks() if shaper is not None else [])
        extra += moe_callbacks(model, run_dir)  # router schedules + diagnostics when the policy is MoE
        try:
            model.learn(total_timesteps=steps, callback=CallbackList([curve, checkpoints, *extra]), tb_log_name=algo)
            model_path = run_dir / "model.zip"
            model.save(model_path)
            if shaper is not None:  # again: a shaper that redesigns while the learner trains (ExpAdaRD) has more
                shaper.write_artifacts(run_dir)
            if isinstance(env, VecNormalize):
                env.save(str(run_dir / "vecnormalize.pkl"))
            final = curve.final(model)
        finally:
            env.close()
            eval_env.close()
        cost = _reward_vec_env(env)
        reward_cost = cost.cost.summary() if cost is not None and cost.reward is not None else {}
        if reward_cost and reward_cost["fraction"] > WARN_COST_FRACTION:
            warnings.warn(f"the reward program cost {reward_cost['fraction']:.1f}x the env's own step time "
                          f"({reward_cost['us_per_step']:.0f} us per step): training ran that much slower",
                          SlowRewardWarning, stacklevel=2)
        result = TrialResult(curve=curve.curve, eval=final, wall_s=time.perf_counter() - start,
                             steps=int(model.num_timesteps), model_path=str(model_path),
                             reward_sha256=program.sha256 if program is not None else None, trainer=self.name,
                             algo=algo, reward_cost=reward_cost)
        (run_dir / "result.json").write_text(result.to_json(indent=1))
        return result
