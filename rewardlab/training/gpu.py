"""The ``gpu`` trainer: PPO on batched torch tensors that never leave the simulator's device.

ManiSkill3's ``physx_cuda`` backend steps thousands of envs in one process and hands back ``(B, ...)``
CUDA tensors. SB3 would copy every step to numpy and back (its ``VecEnv`` is numpy), which caps
throughput far below the simulator's; here the rollout, the reward program (bound to the torch ``np``
facade and evaluated once per step on the batched state) and the PPO update all stay on the device.

The algorithm follows ManiSkill's own PPO baseline (``examples/baselines/ppo/ppo.py``, itself
CleanRL's ``ppo_continuous_action.py``): a Gaussian policy with a state-independent log-std, GAE,
clipped surrogate, value loss, early stop on approximate KL, and the episode ends handled as ManiSkill
does (a truncated episode bootstraps its final value; a terminated one does not). Read top to bottom:
:class:`PPOConfig` (one line of help per field), :class:`ActorCritic`, :func:`ppo_update`,
:class:`GPUTrainer`.

On a machine without CUDA the same code runs on ManiSkill's ``physx_cpu`` backend with one env (slow,
for tests); a batched env is anything with the :class:`BatchedEnv` interface, so tests also use a tiny
torch stand-in for the GPU simulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.config import TrainConfig
from rewardlab.errors import RewardProgramError, UserError
from rewardlab.runtime import limit_threads
from rewardlab.sources import ResolvedReward, ShapedReward, is_sparse, program_of
from rewardlab.state import StateExtractor, fields_used_by
from rewardlab.training.evaluation import eval_seed
from rewardlab.types import CurvePoint, EvalResult, TrialResult


@dataclass
class PPOConfig:
    """PPO settings (ManiSkill's PPO baseline defaults, with ``num_envs`` sized for one GPU)."""

    num_envs: int = 1024
    """parallel envs on the GPU (forced to 1 on ManiSkill's CPU backend)"""
    num_steps: int = 50
    """steps per env per rollout (one ManiSkill episode)"""
    gamma: float = 0.8
    """discount"""
    gae_lambda: float = 0.9
    """GAE lambda"""
    learning_rate: float = 3e-4
    """Adam step size"""
    update_epochs: int = 4
    """passes over each rollout"""
    num_minibatches: int = 32
    """minibatches per pass"""
    clip_coef: float = 0.2
    """surrogate clipping"""
    ent_coef: float = 0.0
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    target_kl: float = 0.1
    """stop an update's epochs once the approximate KL exceeds this"""
    hidden: int = 256
    """units in each of the three hidden layers of actor and critic"""

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> PPOConfig:
        """Defaults replaced by a spec's ``overrides``; unknown keys and meaningless values refused.

        :raises UserError: an unknown key (with the known ones), or a value out of range
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"unknown gpu ppo setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        config = cls(**overrides)
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden"):
            if int(getattr(config, name)) < 1:
                raise UserError(f"gpu ppo {name} must be at least 1, got {getattr(config, name)}")
        if not 0.0 < config.gamma <= 1.0 or not 0.0 <= config.gae_lambda <= 1.0:
            raise UserError(f"gpu ppo gamma must be in (0, 1] and gae_lambda in [0, 1]; got {config.gamma}, {config.gae_lambda}")
        if config.learning_rate <= 0:
            raise UserError(f"gpu ppo learning_rate must be positive, got {config.learning_rate}")
        return config


class BatchedEnv(Protocol):
    """A batch of envs stepping as one, tensors on ``device``.

    ``step`` returns the state each env *reached* (before any reset) as flat card states ``(B, D)``, so a
    reward program sees terminal states, and the observation to act on next (after resets).
    """

    num_envs: int
    device: Any
    obs_dim: int
    act_dim: int

    def reset(self, seed: int) -> Any:
        """Observations ``(B, obs_dim)``."""

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
        """``(next_obs, states, env_reward, terminated, truncated, success)``: ``(B, obs_dim)``,
        ``(B, D)``, then ``(B,)`` float, bool, bool, bool."""

    def close(self) -> None: ...


# -- the policy ------------------------------------------------------------------------------------------
def _layer(torch: Any, n_in: int, n_out: int, std: float = float(np.sqrt(2))) -> Any:
    layer = torch.nn.Linear(n_in, n_out)
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, 0.0)
    return layer


def make_actor_critic(obs_dim: int, act_dim: int, hidden: int = 256) -> Any:
    """ManiSkill's PPO agent: actor and critic MLPs (3 x ``hidden``, tanh), Gaussian actions with a
    learnt state-independent log-std (initial -0.5)."""
    import torch
    from torch import nn

    class ActorCritic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.critic = nn.Sequential(_layer(torch, obs_dim, hidden), nn.Tanh(), _layer(torch, hidden, hidden), nn.Tanh(),
                                        _layer(torch, hidden, hidden), nn.Tanh(), _layer(torch, hidden, 1, 1.0))
            self.actor_mean = nn.Sequential(_layer(torch, obs_dim, hidden), nn.Tanh(), _layer(torch, hidden, hidden),
                                            nn.Tanh(), _layer(torch, hidden, hidden), nn.Tanh(),
                                            _layer(torch, hidden, act_dim, 0.01 * float(np.sqrt(2))))
            self.actor_logstd = nn.Parameter(torch.ones(1, act_dim) * -0.5)

        def value(self, obs: Any) -> Any:
            return self.critic(obs).squeeze(-1)

        def act(self, obs: Any, action: Any = None) -> tuple[Any, Any, Any, Any]:
            mean = self.actor_mean(obs)
            dist = torch.distributions.Normal(mean, self.actor_logstd.expand_as(mean).exp())
            if action is None:
                action = dist.sample()
            return action, dist.log_prob(action).sum(-1), dist.entropy().sum(-1), self.value(obs)

        def deterministic(self, obs: Any) -> Any:
            return self.actor_mean(obs)

    return ActorCritic()


def ppo_update(agent: Any, optimizer: Any, batch: dict[str, Any], config: PPOConfig, generator: Any) -> dict[str, float]:
    """One PPO update on a flattened rollout (every tensor ``(N, ...)``): clipped surrogate, value
    loss and entropy, minibatch SGD, early stop when the approximate KL passes ``target_kl``.

    :return: the last minibatch's ``policy_loss``, ``value_loss``, ``approx_kl``
    """
    import torch

    n = int(batch["obs"].shape[0])
    minibatch = max(n // config.num_minibatches, 1)
    stats: dict[str, float] = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(n, device=batch["obs"].device, generator=generator)
        kl = 0.0
        for start in range(0, n, minibatch):
            idx = order[start:start + minibatch]
            _, logprob, entropy, value = agent.act(batch["obs"][idx], batch["actions"][idx])
            log_ratio = logprob - batch["logprobs"][idx]
            ratio = log_ratio.exp()
            with torch.no_grad():
                kl = float(((ratio - 1) - log_ratio).mean())
            adv = batch["advantages"][idx]
            adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
            value_loss = 0.5 * ((value - batch["returns"][idx]) ** 2).mean()
            loss = policy_loss - config.ent_coef * entropy.mean() + config.vf_coef * value_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
            stats = {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()), "approx_kl": kl}
        if kl > config.target_kl:
            break
    return stats


# -- the reward on the device --------------------------------------------------------------------------------
class DeviceReward:
    """The reward of one batched step, computed on the device: the bound program on the state view,
    the env's own reward, or the sparse success reward.

    :param card: the task
    :param extractor: the card's extractor (the layout of the flat states)
    :param program: the program (None: env or sparse reward)
    :param sparse: reward 1 where the env reports success
    :param device: the torch device of the states
    """

    def __init__(self, card: EnvCard, extractor: StateExtractor, program: Any, sparse: bool, device: Any):
        self.extractor = extractor
        self.sparse = sparse
        self.reward = program.bind(card, backend="torch", device=device) if program is not None else None

    def __call__(self, states: Any, action: Any, env_reward: Any, success: Any) -> tuple[Any, dict[str, Any]]:
        """``(reward (B,), components {name: (B,)})``; a non-finite program reward stops training.

        :raises RewardProgramError: the program returned NaN or infinity
        """
        import torch

        if self.reward is None:
            return (success.float() if self.sparse else env_reward.float()), {}
        total, parts = self.reward(self.extractor.view(states), action)
        total = torch.as_tensor(total, device=states.device).float().reshape(-1)
        if not bool(torch.isfinite(total).all()):
            raise RewardProgramError("non-finite", "the reward program returned NaN or infinity during training")
        return total, parts


# -- the trainer -----------------------------------------------------------------------------------------------
BatchedEnvFactory = Callable[[EnvCard, StateExtractor, int, Any, bool], BatchedEnv]


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _maniskill_env(card: EnvCard, extractor: StateExtractor, num_envs: int, device: Any, evaluation: bool) -> BatchedEnv:
    from rewardlab.sims.maniskill import ManiSkillBatch

    return ManiSkillBatch(card, extractor, num_envs=num_envs, device=device)


class GPUTrainer:
    """PPO with rollouts, rewards and updates on the simulator's device (registered as ``gpu``).

    :param env_factory: ``(card, extractor, num_envs, device, evaluation) -> BatchedEnv``; ManiSkill by
        default, a stand-in in tests
    :param device: torch device (default: ``cuda`` when available, else ``cpu``)
    """

    name = "gpu"
    algorithms = ("ppo",)

    def __init__(self, env_factory: BatchedEnvFactory | None = None, device: str | None = None):
        self.env_factory = env_factory or _maniskill_env
        self.device = device

    def validate(self, card: EnvCard, config: TrainConfig) -> None:
        """Refuse what would not train: a card of a simulator without batched torch envs, bad settings,
        a budget below one rollout."""
        if self.env_factory is _maniskill_env and card.simulator != "maniskill":
            raise UserError(f"the gpu trainer runs ManiSkill3 cards; {card.label} is a {card.simulator} card "
                            "(use trainer sb3)")
        ppo = PPOConfig.from_overrides(config.overrides)
        envs = self._num_envs(ppo)
        if config.budget.steps < envs * ppo.num_steps:
            raise UserError(f"steps {config.budget.steps} is less than one rollout ({envs} envs x {ppo.num_steps} "
                            f"steps = {envs * ppo.num_steps}) on {card.label}: nothing would be learnt")

    def _device(self) -> str:
        return self.device or default_device()

    def _num_envs(self, ppo: PPOConfig) -> int:
        # ManiSkill's CPU backend runs one env per process; a stand-in env may batch on the CPU
        if self.env_factory is _maniskill_env and not self._device().startswith("cuda"):
            return 1
        return ppo.num_envs

    def train(self, card: EnvCard, reward: ResolvedReward, config: TrainConfig, run_dir: Path,
              callbacks: Sequence[Any] = (), progress: Callable[[int, int], None] | None = None,
              check: bool = True) -> TrialResult:
        """Train and evaluate into ``run_dir`` (``model.pt``, ``result.json``, ``reward.py``).

        :param callbacks: not supported (SB3 callbacks need SB3); refused when given
        """
        limit_threads()
        import torch

        start = time.perf_counter()
        self.validate(card, config)
        if callbacks:
            raise UserError("the gpu trainer takes no SB3 callbacks")
        if isinstance(reward, ShapedReward):
            raise UserError("the gpu trainer does not run shaped rewards (their shapers are SB3 wrappers); use trainer sb3")
        program = program_of(reward)
        if program is not None:
            (run_dir / "reward.py").write_text(program.source)
            if check:
                from rewardlab.checks import check_program

                check_program(program, card, seed=config.seed).raise_if_failed()
        fields_read = set(fields_used_by(card, program.source)) if program is not None else set()
        if card.success_rule is not None:
            fields_read |= card.success_rule.fields
        extractor = StateExtractor(card, fields_read)
        ppo = PPOConfig.from_overrides(config.overrides)
        device = torch.device(self._device())
        n_envs = self._num_envs(ppo)
        torch.manual_seed(config.seed)
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed)

        env = self.env_factory(card, extractor, n_envs, device, False)
        eval_env = self.env_factory(card, extractor, min(config.evaluation.episodes, n_envs), device, True)
        reward_fn = DeviceReward(card, extractor, program, is_sparse(reward), device)
        agent = make_actor_critic(env.obs_dim, env.act_dim, ppo.hidden).to(device)
        optimizer = torch.optim.Adam(agent.parameters(), lr=ppo.learning_rate, eps=1e-5)
        steps, every = config.budget.steps, config.evaluation.every or max(config.budget.steps // 10, 1)
        curve: list[CurvePoint] = []
        try:
            curve.append(_curve_point(0, self.evaluate(agent, eval_env, reward_fn, config.evaluation.episodes,
                                                       eval_seed(config.seed), card)))
            obs = env.reset(seed=config.seed)
            done_steps, next_eval = 0, every
            T, B = ppo.num_steps, n_envs
            while done_steps < steps:
                buf = {k: torch.zeros((T, B) + shape, device=device) for k, shape in
                       (("obs", (env.obs_dim,)), ("actions", (env.act_dim,)), ("logprobs", ()), ("rewards", ()),
                        ("values", ()), ("dones", ()), ("final_values", ()))}
                for t in range(T):
                    with torch.no_grad():
                        action, logprob, _, value = agent.act(obs)
                    buf["obs"][t], buf["actions"][t], buf["logprobs"][t], buf["values"][t] = obs, action, logprob, value
                    next_obs, states, env_reward, terminated, truncated, success = env.step(action)
                    r, _ = reward_fn(states, action, env_reward, success)
                    buf["rewards"][t] = r
                    done = terminated | truncated
                    buf["dones"][t] = done.float()
                    if bool(truncated.any()):  # ManiSkill's PPO: a time limit bootstraps from the state reached
                        with torch.no_grad():
                            reached = env.final_obs if hasattr(env, "final_obs") else next_obs
                            buf["final_values"][t] = torch.where(truncated & ~terminated, agent.value(reached),
                                                                 torch.zeros_like(r))
                    obs = next_obs
                with torch.no_grad():
                    next_value = agent.value(obs)
                    advantages = torch.zeros_like(buf["rewards"])
                    last = torch.zeros(B, device=device)
                    for t in reversed(range(T)):
                        value_next = next_value if t == T - 1 else buf["values"][t + 1]
                        not_done = 1.0 - buf["dones"][t]
                        bootstrap = value_next * not_done + buf["final_values"][t]
                        delta = buf["rewards"][t] + ppo.gamma * bootstrap - buf["values"][t]
                        last = delta + ppo.gamma * ppo.gae_lambda * not_done * last
                        advantages[t] = last
                    returns = advantages + buf["values"]
                flat = {k: buf[k].reshape((T * B,) + buf[k].shape[2:]) for k in ("obs", "actions", "logprobs", "values")}
                flat["advantages"], flat["returns"] = advantages.reshape(-1), returns.reshape(-1)
                ppo_update(agent, optimizer, flat, ppo, generator)
                done_steps += T * B
                if progress is not None:
                    progress(min(done_steps, steps), steps)
                if done_steps >= next_eval and done_steps < steps:
                    point = self.evaluate(agent, eval_env, reward_fn, config.evaluation.episodes, eval_seed(config.seed), card)
                    curve.append(_curve_point(done_steps, point))
                    next_eval += every
            final = self.evaluate(agent, eval_env, reward_fn, config.evaluation.episodes, eval_seed(config.seed), card)
            curve.append(_curve_point(done_steps, final))
            model_path = run_dir / "model.pt"
            torch.save(agent.state_dict(), model_path)
        finally:
            env.close()
            eval_env.close()
        result = TrialResult(curve=curve, eval=final, wall_s=time.perf_counter() - start, steps=done_steps,
                             model_path=str(model_path), reward_sha256=program.sha256 if program is not None else None,
                             trainer=self.name, algo=config.algo)
        (run_dir / "result.json").write_text(result.to_json(indent=1))
        return result

    def evaluate(self, agent: Any, env: BatchedEnv, reward_fn: DeviceReward, episodes: int, seed: int,
                 card: EnvCard) -> EvalResult:
        """``episodes`` deterministic episodes (in rounds of ``env.num_envs``), seeded from ``seed``."""
        import torch

        out: dict[str, list[Any]] = {"env_return": [], "program_return": [], "success": [], "length": [], "components": []}
        round_ = 0
        while len(out["length"]) < episodes:
            obs = env.reset(seed=seed + round_ * env.num_envs)
            round_ += 1
            B = env.num_envs
            env_ret = torch.zeros(B, device=obs.device)
            prog_ret = torch.zeros(B, device=obs.device)
            comps: dict[str, Any] = {}
            hit = torch.zeros(B, dtype=torch.bool, device=obs.device)
            length = torch.zeros(B, dtype=torch.long, device=obs.device)
            running = torch.ones(B, dtype=torch.bool, device=obs.device)
            for _ in range(card.episode_steps):
                with torch.no_grad():
                    action = agent.deterministic(obs)
                obs, states, env_reward, terminated, truncated, success = env.step(action)
                r, parts = reward_fn(states, action, env_reward, success)
                live = running.float()
                env_ret += env_reward.float() * live
                prog_ret += r * live
                for name, value in parts.items():
                    comps[name] = comps.get(name, 0.0) + torch.as_tensor(value, device=obs.device).float() * live
                hit |= success & running
                length += running.long()
                running &= ~(terminated | truncated)
                if not bool(running.any()):
                    break
            for i in range(min(B, episodes - len(out["length"]))):
                out["env_return"].append(float(env_ret[i]))
                out["program_return"].append(float(prog_ret[i]) if reward_fn.reward is not None else None)
                out["success"].append(bool(hit[i]) if card.success_rule is not None else None)
                out["length"].append(int(length[i]))
                out["components"].append({k: float(v[i]) for k, v in comps.items()})
        return EvalResult(**out)


def _curve_point(step: int, result: EvalResult) -> CurvePoint:
    programs = [p for p in result.program_return if p is not None]
    successes = [s for s in result.success if s is not None]
    names = {k for c in result.components for k in c}
    return CurvePoint(step=step, return_env=float(np.mean(result.env_return)),
                      return_program=float(np.mean(programs)) if programs else None,
                      success=float(np.mean(successes)) if successes else None,
                      length=float(np.mean(result.length)),
                      components={k: float(np.mean([c.get(k, 0.0) for c in result.components])) for k in names})
