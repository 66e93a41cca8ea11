"""Train and evaluate SB3 agents (PPO, SAC, TD3) on a card's env with the env's own reward or a program.

:func:`train` reads top to bottom: resolve the reward, check it in the sandbox, build the vector env
(``StateCapture`` per env -> :class:`RewardVecEnv` -> ``VecMonitor`` -> optional ``VecNormalize``),
load the preset from ``agents/<family>.yaml``, learn with periodic deterministic evaluations (the
learning curve), save a checkpoint, and evaluate the final policy over fixed, seeded episodes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from rewardlab.cards import EnvCard, load_card
from rewardlab.errors import UserError
from rewardlab.program import RewardProgram, load_program, reference_program
from rewardlab.resources import resource_dir
from rewardlab.state import StateExtractor

ALGORITHMS = ("ppo", "sac", "td3")
NATIVE_REWARDS = ("env", "builtin")
_RUN_KEYS = ("n_envs", "normalize", "policy")
_EVAL_SEED_BASE = 10_000  # evaluation envs never share seeds with training envs


def limit_threads() -> None:
    """One torch/OpenMP thread: with two threads and any other load on 2 cores, training slows 15-100x."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@dataclass
class TrialResult:
    """What one training run produced (see docs/CONTRACTS-dev.md)."""

    curve: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    steps: int = 0
    model_path: str = ""
    reward_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- presets -----------------------------------------------------------------------------------------
def load_preset(card: EnvCard, algo: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The algorithm's hyperparameters for a card: ``default`` block, then the env's, then ``overrides``.

    :param card: the env card (its simulator picks ``agents/<simulator>.yaml``)
    :param algo: ``ppo``, ``sac`` or ``td3``
    :param overrides: keys that replace the preset's
    """
    if algo not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGORITHMS)}")
    path = resource_dir("agents") / f"{card.simulator}.yaml"
    if not path.is_file():
        raise UserError(f"no algorithm presets for the {card.simulator} simulator (expected {path})")
    presets = yaml.safe_load(path.read_text()) or {}
    if algo not in presets:
        raise UserError(f"{path.name} has no {algo} preset")
    params = dict(presets[algo].get("default", {}))
    params.update(presets[algo].get(card.env_id, {}))
    params.update(overrides or {})
    return params


def _policy_kwargs(raw: dict[str, Any] | None) -> dict[str, Any]:
    import torch.nn as nn

    kwargs = dict(raw or {})
    if isinstance(kwargs.get("activation_fn"), str):
        acts = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
        kwargs["activation_fn"] = acts[kwargs["activation_fn"].lower()]
    return kwargs


# -- rewards -----------------------------------------------------------------------------------------
def resolve_reward(card: EnvCard, reward: str) -> RewardProgram | None:
    """``env``/``builtin`` -> None (the env's own reward); ``reference`` -> the hand-written reference
    beside the card; anything else is a path to a program file."""
    if reward in NATIVE_REWARDS:
        return None
    if reward == "reference":
        return reference_program(card)
    return load_program(reward)


# -- envs --------------------------------------------------------------------------------------------
def make_vec_env(
    card: EnvCard,
    extractor: StateExtractor,
    program: RewardProgram | None,
    n_envs: int,
    seed: int,
    monitor: bool = True,
) -> Any:
    """``DummyVecEnv`` of ``n_envs`` card envs -> :class:`RewardVecEnv` (-> ``VecMonitor``).

    Sub-env ``i`` is seeded ``seed + i``. DummyVecEnv, since SubprocVecEnv is slower on 2 cores.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from rewardlab.sims import make_env
    from rewardlab.wrappers import RewardVecEnv, StateCapture

    def factory(i: int) -> Callable[[], Any]:
        def make() -> Any:
            env = make_env(card, seed=seed + i)
            return StateCapture(env, extractor) if extractor.has_sim else env
        return make

    venv = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    reward = program.bind(card) if program is not None else None
    venv = RewardVecEnv(venv, extractor, reward)
    return VecMonitor(venv) if monitor else venv


def evaluate(model: Any, venv: Any, episodes: int, deterministic: bool = True) -> dict[str, list[Any]]:
    """Run exactly one episode in each of ``venv``'s envs (``episodes`` of them) and collect their stats."""
    stats: list[dict[str, Any] | None] = [None] * episodes
    obs = venv.reset()
    while any(s is None for s in stats):
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, _, dones, infos = venv.step(action)
        for i in np.flatnonzero(dones):
            if stats[i] is None:
                stats[i] = infos[i]["episode_stats"]
    done = [s for s in stats if s is not None]
    out: dict[str, list[Any]] = {key: [s[key] for s in done] for key in ("env_return", "program_return", "success", "length")}
    out["components"] = [s["components"] for s in done]
    return out


def _eval_env(card: EnvCard, extractor: StateExtractor, program: RewardProgram | None, episodes: int,
              seed: int, train_env: Any) -> Any:
    """Evaluation envs: fixed seeds per training seed (so every reward source meets the same goals),
    and the training env's observation normalisation, frozen."""
    from stable_baselines3.common.vec_env import VecNormalize

    venv = make_vec_env(card, extractor, program, episodes, _EVAL_SEED_BASE + 100 * seed, monitor=False)
    if isinstance(train_env, VecNormalize):
        venv = VecNormalize(venv, training=False, norm_obs=train_env.norm_obs, norm_reward=False)
        venv.obs_rms = train_env.obs_rms
    return venv


def _summary(ev: dict[str, list[Any]], step: int) -> dict[str, Any]:
    mean = lambda xs: float(np.mean(xs)) if xs and xs[0] is not None else None  # noqa: E731
    names = ev["components"][0].keys() if ev["components"] else ()
    components = {k: float(np.mean([c[k] for c in ev["components"]])) for k in names}
    return {"step": step, "return_env": mean(ev["env_return"]), "return_program": mean(ev["program_return"]),
            "success": mean(ev["success"]), "length": mean(ev["length"]), "components": components}


# -- training ------------------------------------------------------------------------------------------
def build_agent(
    card: EnvCard,
    extractor: StateExtractor,
    program: RewardProgram | None,
    algo: str,
    seed: int,
    steps: int,
    preset_overrides: dict[str, Any] | None = None,
    tensorboard_log: Path | None = None,
) -> tuple[Any, Any]:
    """The SB3 model and its training env, from the card's preset (what :func:`train` and the
    benchmarks use).

    :param steps: the training budget; ``learning_starts`` is capped to a fifth of it, so a short
        budget still learns something
    :return: ``(model, env)``; ``env`` is a ``VecNormalize`` when the preset says ``normalize``
    """
    from stable_baselines3 import PPO, SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    params = load_preset(card, algo, preset_overrides)
    n_envs = int(params.pop("n_envs", 1))
    normalize = bool(params.pop("normalize", False))
    policy = params.pop("policy", "MlpPolicy")
    params["policy_kwargs"] = _policy_kwargs(params.get("policy_kwargs"))
    if isinstance(params.get("action_noise"), dict):
        sigma = float(params["action_noise"].get("sigma", 0.1))
        params["action_noise"] = NormalActionNoise(np.zeros(card.action.shape), sigma * np.ones(card.action.shape))
    if "learning_starts" in params:
        params["learning_starts"] = min(int(params["learning_starts"]), max(steps // 5, 100))

    env = make_vec_env(card, extractor, program, n_envs, seed)
    if normalize:
        env = VecNormalize(env, norm_obs=True, norm_reward=True, gamma=params.get("gamma", 0.99))
    algo_cls = {"ppo": PPO, "sac": SAC, "td3": TD3}[algo]
    try:
        model = algo_cls(policy, env, seed=seed, device="cpu", verbose=0,
                         tensorboard_log=str(tensorboard_log) if tensorboard_log else None, **params)
    except TypeError as e:
        raise UserError(f"invalid {algo} hyperparameter: {e}") from None
    return model, env


def train(
    card_id: str,
    reward: str,
    algo: str,
    steps: int,
    seed: int,
    run_dir: Path,
    eval_episodes: int = 5,
    eval_every: int | None = None,
    preset_overrides: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check: bool = True,
) -> TrialResult:
    """Train one agent and evaluate it.

    :param card_id: env card id or path
    :param reward: ``env`` (the env's own reward), ``reference`` or a path to a reward program
    :param algo: ``ppo``, ``sac`` or ``td3``
    :param steps: environment steps to train for
    :param seed: seed of the agent, the training envs and (offset) the evaluation envs
    :param run_dir: where the model, checkpoints, TensorBoard logs and ``result.json`` go
    :param eval_episodes: deterministic evaluation episodes at each curve point and at the end
    :param eval_every: steps between learning-curve evaluations (default: a tenth of ``steps``)
    :param preset_overrides: hyperparameters replacing the preset's
    :param progress: called with ``(steps_done, steps)`` as training goes
    :param check: run the sandbox trial on the program before training (leave on for untrusted code)
    """
    limit_threads()
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecNormalize

    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    card = load_card(card_id)
    program = resolve_reward(card, reward)
    extractor = StateExtractor.for_program(card, program.source if program else None)
    if program is not None:
        (run_dir / "reward.py").write_text(program.source)
        if check:
            from rewardlab.checks import check_program

            check_program(program, card, seed=seed).raise_if_failed()

    model, env = build_agent(card, extractor, program, algo, seed, steps, preset_overrides, run_dir / "tb")
    normalize = isinstance(env, VecNormalize)
    n_envs = env.num_envs

    eval_every = eval_every or max(steps // 10, 1)
    eval_env = _eval_env(card, extractor, program, eval_episodes, seed, env)
    curve: list[dict[str, Any]] = []

    class Curve(BaseCallback):
        """Deterministic evaluations every ``eval_every`` steps; training-episode stats to TensorBoard."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = eval_every
            self.last: tuple[int, dict[str, list[Any]]] | None = None

        def _evaluate(self, step: int) -> dict[str, Any]:
            ev = evaluate(self.model, eval_env, eval_episodes)
            self.last = (step, ev)
            point = _summary(ev, step)
            curve.append(point)
            return point

        def _on_training_start(self) -> None:
            self._evaluate(0)  # the untrained policy

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("episode_stats")
                if ep is None:
                    continue
                self.logger.record_mean("rewardlab/env_return", ep["env_return"])
                if ep["program_return"] is not None:
                    self.logger.record_mean("rewardlab/program_return", ep["program_return"])
                if ep["success"] is not None:
                    self.logger.record_mean("rewardlab/success", float(ep["success"]))
                for name, value in ep["components"].items():
                    self.logger.record_mean(f"rewardlab/components/{name}", value)
            if self.num_timesteps >= self.next_eval:
                self.next_eval += eval_every
                point = self._evaluate(self.num_timesteps)
                for key in ("return_env", "return_program", "success"):
                    if point[key] is not None:
                        self.logger.record(f"eval/{key}", point[key])
            if progress is not None:
                progress(self.num_timesteps, steps)
            return True

    curve_callback = Curve()
    checkpoints = CheckpointCallback(save_freq=max(steps // (4 * n_envs), 1), save_path=str(run_dir / "checkpoints"),
                                     name_prefix=algo, save_vecnormalize=normalize)
    model.learn(total_timesteps=steps, callback=CallbackList([curve_callback, checkpoints]), tb_log_name=algo)

    model_path = run_dir / "model.zip"
    model.save(model_path)
    if normalize:
        env.save(str(run_dir / "vecnormalize.pkl"))
    # The final evaluation is the last curve point when one was taken at the end: every evaluation meets
    # the next goals of a MetaWorld task's cycle, so a second one would disagree with the curve.
    if curve_callback.last is not None and curve_callback.last[0] == model.num_timesteps:
        final = curve_callback.last[1]
    else:
        final = evaluate(model, eval_env, eval_episodes)
        curve.append(_summary(final, model.num_timesteps))
    env.close()
    eval_env.close()
    result = TrialResult(curve=curve, eval=final, wall_s=time.perf_counter() - start, steps=int(model.num_timesteps),
                         model_path=str(model_path), reward_sha256=program.sha256 if program else None)
    (run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result
