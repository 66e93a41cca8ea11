"""Multi-task MetaWorld (MT10, v3) with multi-head SAC (MT-SAC) and MoE-SAC variants at matched parameter counts.

Environment (research note §5): ``gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=s,
use_one_hot=True, max_episode_steps=H)`` — ten envs, one per task, each observation the 39-d state plus a
10-d one-hot task id, the V2 reward (MetaWorld's default ``reward_function_version="v2"``); its
sub-envs are wrapped in SB3's ``DummyVecEnv`` (SB3 cannot ingest a gymnasium ``VectorEnv``, SB3 issue
#1745). One SAC agent trains on all ten (every vector step adds one transition per task, so ``steps
per task`` = vector steps, mtrl's convention).

Multi-head SAC as Meta-World+ re-implements it (``rainx0r/metaworld-algorithms``, MTMHSAC; mtrl's
``should_use_disentangled_alpha``), built by :class:`MultiTaskSACPolicy` and :class:`MultiTaskSAC`:

- actor: a trunk over the whole observation (state and one-hot), then one output head per task
  (:class:`PerTaskLinear`: its own weight *and* bias for the mean and the log-std), the head picked by
  the one-hot id;
- critic: two independent Q-networks, each a trunk over ``[observation, action]`` then one scalar head per
  task, picked the same way;
- entropy: one learned ``log α`` per task (``per_task_alpha``, on by default and in the MT10 specs), each
  trained by SAC's target-entropy loss on that task's samples only, and each sample's actor loss and
  soft target using its own task's ``α``.

The trunk is a dense MLP (``mt_mlp``: MTMHSAC) or an :class:`~rewardlab.moe.layers.MoEMLP` with any router
(``moe``; ``task_attention`` is CARE-like), with the same heads, so the variants differ only in the trunk.
:func:`param_table` counts each variant's parameters against the MTMHSAC baseline.

Evaluation: deterministic, ``eval_episodes`` episodes per task on envs seeded apart from training;
success = MetaWorld's ``info["success"]`` at any step (mtrl, Meta-World+). Aggregates over seeds: the
IQM with rliable's stratified-bootstrap 95% interval (:func:`rewardlab.stats.iqm_ci`), and the mean.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3 import SAC
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy

from rewardlab.errors import UserError
from rewardlab.moe.layers import MoEMLP, count_parameters
from rewardlab.types import Seed

MT10_TASKS = 10
#: Anchors from the research note (MT10 success, %), with their protocols.
ANCHORS = [
    ("Meta-World+ re-implementation, SM", "84.9", "v3, V2 reward, 500-step horizon, 2M steps/task, IQM over 10 seeds"),
    ("Meta-World+ re-implementation, MOORE", "83.2", "same protocol"),
    ("Meta-World+ re-implementation, MTMHSAC", "≈75", "same protocol"),
    ("MOORE (paper)", "88.7", "MetaWorld v2, horizon 150, 2M steps/task, 10 seeds"),
    ("CARE (paper)", "84 ± 5.1 (s.e.)", "MetaWorld v1, 2M steps/task, 10 seeds"),
]


class PerTaskLinear(nn.Module):
    """One affine head per task, picked by the one-hot task id: ``y_n = x_n W_t + b_t`` for ``t`` the task of
    sample ``n`` (MTMHSAC's last layer with ``T·d_out`` outputs, of which the task's ``d_out`` are kept).

    All heads are computed and masked by the one-hot, so a sample's gradient reaches only its task's head.

    :param d_in: input width
    :param d_out: output width of each head
    :param n_tasks: number of heads ``T``
    """

    def __init__(self, d_in: int, d_out: int, n_tasks: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(n_tasks, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_tasks, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """:param x: ``(N, d_in)``
        :param task: ``(N, T)`` one-hot
        :return: ``(N, d_out)``
        """
        every = torch.einsum("ni,tio->nto", x, self.weight) + self.bias  # (N, T, d_out)
        return (every * task.unsqueeze(-1)).sum(1)


class DenseTrunk(nn.Module):
    """MTMHSAC's shared trunk: ``Linear -> ReLU`` per width; ``task`` is accepted and ignored (the one-hot
    is already part of the input)."""

    def __init__(self, d_in: int, widths: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for w_in, w_out in zip([d_in, *widths[:-1]], widths):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def make_trunk(d_in: int, widths: list[int], n_tasks: int, moe: dict[str, Any] | None) -> nn.Module:
    """A dense trunk (``moe=None``) or an :class:`MoEMLP` with the settings in ``moe`` (``router``,
    ``n_experts``, ``n_shared``, ``router_kwargs``); both take ``(x, task)``."""
    if moe is None:
        return DenseTrunk(d_in, widths)
    return MoEMLP(d_in, widths, n_tasks=n_tasks, **moe)


class MultiTaskActor(Actor):
    """SAC's squashed-Gaussian actor with a trunk and per-task heads for the mean and log-std.

    :param n_tasks: the observation ends with a one-hot task id of this width
    :param widths: trunk widths
    :param moe: ``None`` (dense trunk) or :class:`MoEMLP` settings
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Box, net_arch: list[int],
                 features_extractor: BaseFeaturesExtractor, features_dim: int, n_tasks: int, widths: list[int],
                 moe: dict[str, Any] | None, **kwargs: Any):
        super().__init__(observation_space, action_space, [], features_extractor, features_dim, **kwargs)
        action_dim = get_action_dim(action_space)
        self.n_tasks = n_tasks
        self.latent_pi = make_trunk(features_dim, widths, n_tasks, moe)  # type: ignore[assignment]
        self.mu = PerTaskLinear(widths[-1], action_dim, n_tasks)
        self.log_std = PerTaskLinear(widths[-1], action_dim, n_tasks)  # type: ignore[assignment]

    def get_action_dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:  # type: ignore[override]
        features = self.extract_features(obs, self.features_extractor)
        task = features[:, -self.n_tasks:]
        latent = self.latent_pi(features, task)
        mean = self.mu(latent, task)
        log_std = torch.clamp(self.log_std(latent, task), LOG_STD_MIN, LOG_STD_MAX)  # type: ignore[operator]
        return mean, log_std, {}


class MultiTaskQ(nn.Module):
    """One Q-network of MTMHSAC: a trunk over ``[observation, action]``, then one scalar head per task.

    :param d_obs: observation width (its last ``n_tasks`` entries are the one-hot task id)
    :param d_act: action width
    """

    def __init__(self, d_obs: int, d_act: int, n_tasks: int, widths: list[int], moe: dict[str, Any] | None):
        super().__init__()
        self.d_obs, self.n_tasks = d_obs, n_tasks
        self.trunk = make_trunk(d_obs + d_act, widths, n_tasks, moe)
        self.head = PerTaskLinear(widths[-1], 1, n_tasks)

    def forward(self, obs_action: torch.Tensor) -> torch.Tensor:
        """:param obs_action: ``(N, d_obs + d_act)``, as SB3's ``ContinuousCritic`` concatenates them
        :return: ``(N, 1)``
        """
        task = obs_action[:, self.d_obs - self.n_tasks:self.d_obs]
        return self.head(self.trunk(obs_action, task), task)


class MultiTaskCritic(ContinuousCritic):
    """SB3's twin critic with each Q-network a :class:`MultiTaskQ` (the action enters the trunk)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Box, net_arch: list[int],
                 features_extractor: BaseFeaturesExtractor, features_dim: int, n_tasks: int, widths: list[int],
                 moe: dict[str, Any] | None, **kwargs: Any):
        super().__init__(observation_space, action_space, [], features_extractor, features_dim, **kwargs)
        for idx in range(self.n_critics):
            q_net = MultiTaskQ(features_dim, get_action_dim(action_space), n_tasks, widths, moe)
            self.add_module(f"qf{idx}", q_net)  # replaces SB3's linear Q-head
            self.q_networks[idx] = q_net


class MultiTaskSACPolicy(SACPolicy):
    """SAC policy of MTMHSAC (dense trunk) or MoE-SAC (MoE trunk): :class:`MultiTaskActor` and
    :class:`MultiTaskCritic` over a flat observation that ends with the one-hot task id.

    :param n_tasks: one-hot width ``T``
    :param widths: trunk widths (actor and each Q-network)
    :param moe: ``None`` for MTMHSAC, else :class:`MoEMLP` settings
    :raises UserError: a non-flat observation space, ``n_tasks`` not below its width, gSDE, empty widths
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Box, lr_schedule: Callable[[float], float],
                 n_tasks: int = MT10_TASKS, widths: list[int] | tuple[int, ...] = (400, 400, 400),
                 moe: dict[str, Any] | None = None, **kwargs: Any):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise UserError(f"the multi-task policy needs a flat Box observation space (got {observation_space})")
        if not 1 <= n_tasks < observation_space.shape[0]:
            raise UserError(f"n_tasks {n_tasks} must be >= 1 and less than the observation width {observation_space.shape[0]}")
        if not widths or min(widths) < 1:
            raise UserError(f"the multi-task trunk needs at least one layer of positive width (got {list(widths)})")
        if kwargs.get("use_sde"):
            raise UserError("the multi-task policy does not support gSDE (use_sde)")
        kwargs.pop("net_arch", None)
        self.mt_kwargs: dict[str, Any] = {"n_tasks": int(n_tasks), "widths": [int(w) for w in widths], "moe": moe}
        super().__init__(observation_space, action_space, lr_schedule, net_arch=[], **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("net_arch", None)
        data.update(self.mt_kwargs)
        return data

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> MultiTaskActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return MultiTaskActor(**actor_kwargs, **self.mt_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> MultiTaskCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return MultiTaskCritic(**critic_kwargs, **self.mt_kwargs).to(self.device)


class MultiTaskSAC(SAC):
    """SAC with one learned entropy coefficient per task (MT-SAC; mtrl's disentangled alpha).

    ``log α`` is a ``(T,)`` tensor; sample ``n`` of task ``t`` uses ``α_t`` in its actor loss and soft target,
    and the temperature loss ``−mean_n log α_{t(n)} (log π(a_n|s_n) + H̄)`` (``H̄`` SB3's target entropy,
    ``−dim A``) gives ``log α_t`` the gradient of task ``t``'s samples alone (averaged over the whole batch,
    as metaworld-algorithms does). :meth:`train` is SB3 2.9.2's ``SAC.train`` with that change
    (:data:`rewardlab.moe.sb3.TESTED_SB3`); without ``per_task_alpha`` it is SB3's single ``α``.

    :param per_task_alpha: one ``α`` per task (True) or SB3's single one
    :raises UserError: ``per_task_alpha`` with a policy that is not :class:`MultiTaskSACPolicy`
    """

    def __init__(self, *args: Any, per_task_alpha: bool = True, **kwargs: Any):
        self.per_task_alpha = per_task_alpha
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.n_tasks = int(getattr(self.policy, "mt_kwargs", {}).get("n_tasks", 0))
        if self.per_task_alpha and self.n_tasks < 1:
            raise UserError("per_task_alpha needs the multi-task policy (MultiTaskSACPolicy)")
        if self.per_task_alpha and self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            init = self.log_ent_coef.detach()  # SB3's initial log α (ent_coef="auto_<value>"), for every task
            self.log_ent_coef = init.repeat(self.n_tasks).requires_grad_(True)
            self.ent_coef_optimizer = torch.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))

    def entropy_terms(self, observations: torch.Tensor, log_prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each sample's entropy coefficient and the temperature loss.

        :param observations: ``(N, d_obs)``, ending with the one-hot task id
        :param log_prob: ``(N, 1)`` log-probabilities of the actor's actions
        :return: ``α`` per sample ``(N, 1)`` (detached), and the loss (None when ``α`` is fixed)
        """
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return self.ent_coef_tensor.expand(len(observations), 1), None
        if self.per_task_alpha:
            log_alpha = observations[:, -self.n_tasks:] @ self.log_ent_coef  # (N,): log α of each sample's task
        else:
            log_alpha = self.log_ent_coef.expand(len(observations))
        assert isinstance(self.target_entropy, float)
        loss = -(log_alpha * (log_prob.reshape(-1) + self.target_entropy).detach()).mean()
        return torch.exp(log_alpha.detach()).reshape(-1, 1), loss

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        ent_coef_losses, ent_coefs, actor_losses, critic_losses = [], [], [], []
        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)
            ent_coef, ent_coef_loss = self.entropy_terms(replay_data.observations, log_prob)
            ent_coefs.append(ent_coef.mean().item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                ent_coef_losses.append(ent_coef_loss.item())
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
            with torch.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                next_q_values = torch.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = torch.min(next_q_values, dim=1, keepdim=True)
                # the next state's task is the sample's task: the same α
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values
            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, torch.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()
            q_values_pi = torch.cat(self.critic(replay_data.observations, actions_pi), dim=1)
            min_qf_pi, _ = torch.min(q_values_pi, dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        if self.per_task_alpha and self.log_ent_coef is not None:
            for t, value in enumerate(torch.exp(self.log_ent_coef.detach()).tolist()):
                self.logger.record(f"train/ent_coef_task{t}", value)
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if ent_coef_losses:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))


class Variant(BaseModel):
    """One policy of the comparison."""

    model_config = ConfigDict(extra="forbid")
    name: str
    policy: Literal["mt_mlp", "moe"] = "mt_mlp"
    widths: list[int] = Field(default=[400, 400], min_length=1)
    router: str = "topk"
    n_experts: int = Field(default=4, ge=1, le=64)
    n_shared: int = Field(default=0, ge=0)
    router_kwargs: dict[str, Any] = Field(default_factory=dict)
    match_params_of: str | None = Field(default=None, description="mt_mlp only: widen to this variant's parameter count")


class MT10Spec(BaseModel):
    """The MT10 comparison as a YAML spec (``experiments/moe_mt10_*.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    study: Literal["mt10"]
    description: str = ""
    seeds: list[Seed] = Field(min_length=1)
    steps_per_task: int = Field(gt=0, description="vector steps = transitions per task")
    max_episode_steps: int = Field(default=500, gt=0, le=500, description="MetaWorld horizon (Meta-World+: 500)")
    eval_episodes: int = Field(default=1, gt=0, description="deterministic evaluation episodes per task")
    variants: list[Variant] = Field(min_length=1)
    sac: dict[str, Any] = Field(default_factory=dict, description="SB3 SAC settings (batch_size, learning_starts, ...)")
    per_task_alpha: bool = Field(default=True, description="MT-SAC's one learned entropy coefficient per task "
                                 "(False: SB3's single one)")
    device: str = Field(default="cpu", description="torch device: cpu, cuda or auto")


def make_mt10(seed: int, max_episode_steps: int) -> Any:
    """MT10 as an SB3 ``VecMonitor(DummyVecEnv)`` of the ten one-hot sub-envs."""
    import metaworld  # noqa: F401  (registers Meta-World/*)
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    mt = gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=seed, use_one_hot=True,
                      max_episode_steps=max_episode_steps)
    sub_envs: list[gym.Env] = mt.envs  # type: ignore[attr-defined]  # SyncVectorEnv's sub-envs
    return VecMonitor(DummyVecEnv([partial(_same, e) for e in sub_envs]))


def _same(env: gym.Env) -> gym.Env:
    return env


def _policy_kwargs(variant: Variant, widths: list[int]) -> dict[str, Any]:
    """:class:`MultiTaskSACPolicy` keyword arguments for ``variant`` with trunk ``widths``."""
    moe = None if variant.policy == "mt_mlp" else {
        "router": variant.router, "n_experts": variant.n_experts, "n_shared": variant.n_shared,
        "router_kwargs": dict(variant.router_kwargs)}
    return {"n_tasks": MT10_TASKS, "widths": list(widths), "moe": moe}


def _policy(variant: Variant, widths: list[int], d_in: int = 39 + MT10_TASKS, d_act: int = 4) -> MultiTaskSACPolicy:
    obs = gym.spaces.Box(-np.inf, np.inf, (d_in,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (d_act,), np.float32)
    return MultiTaskSACPolicy(obs, act, lambda _: 3e-4, **_policy_kwargs(variant, widths))


def _params(variant: Variant, widths: list[int], d_in: int = 39 + MT10_TASKS, d_act: int = 4) -> int:
    """Parameters of the SAC actor and critic (online) that ``variant`` builds with trunk ``widths``."""
    policy = _policy(variant, widths, d_in, d_act)
    return count_parameters(policy.actor) + count_parameters(policy.critic)


def _active_k(variant: Variant) -> int | None:
    """Routed experts one sample uses, where the router fixes it (top-k family); None: not fixed."""
    if variant.policy == "moe" and variant.router in ("topk", "prototyping", "norm_sigmoid"):
        return int(variant.router_kwargs.get("k", 2))  # the three routers' default k
    return None


def param_table(spec: MT10Spec) -> list[str]:
    """Markdown table: each variant's actor and critic (both Q-networks, online) parameters and the ratio to
    the baseline, the first ``mt_mlp`` variant without ``match_params_of`` (else the first ``mt_mlp``).

    Active parameters count ``k`` of ``E`` routed experts where the router fixes ``k``
    (:func:`~rewardlab.moe.layers.count_parameters`); routers with a variable number of active experts are
    counted in full.
    """
    widths = _widths(spec)
    dense = [v for v in spec.variants if v.policy == "mt_mlp"]
    base = next((v for v in dense if v.match_params_of is None), dense[0] if dense else None)
    counts = {}
    for v in spec.variants:
        policy = _policy(v, widths[v.name])
        k = _active_k(v)
        active = (count_parameters(policy.actor, True, k) + count_parameters(policy.critic, True, k)) if k else None
        counts[v.name] = (count_parameters(policy.actor), count_parameters(policy.critic), active)
    total_base = sum(counts[base.name][:2]) if base is not None else None
    lines = [f"Baseline: `{base.name if base else '-'}`. Critic: both Q-networks (online; the target copies are not "
             "trained). Active: parameters one sample uses (k of E routed experts, where the router fixes k).", "",
             "| variant | trunk | actor | critic | actor+critic | ÷ baseline | matched to | active actor+critic |",
             "|---|---|---|---|---|---|---|---|"]
    for v in spec.variants:
        actor, critic, active = counts[v.name]
        trunk = "MLP" if v.policy == "mt_mlp" else f"MoE {v.router}, E={v.n_experts}"
        trunk += f"+{v.n_shared} shared" if v.n_shared else ""
        ratio = f"{(actor + critic) / total_base:.3f}" if total_base else "-"
        target = v.match_params_of
        matched = f"{(actor + critic) / sum(counts[target][:2]):.3f} × {target}" if target else "-"
        lines.append(f"| {v.name} | {trunk} {widths[v.name]} | {actor:,} | {critic:,} | {actor + critic:,} | {ratio} | "
                     f"{matched} | {f'{active:,}' if active else 'all'} |")
    return lines


def _widths(spec: MT10Spec) -> dict[str, list[int]]:
    names = {v.name: v for v in spec.variants}
    out = {}
    for v in spec.variants:
        if v.match_params_of is None:
            out[v.name] = list(v.widths)
        elif v.match_params_of not in names or v.policy != "mt_mlp":
            raise UserError(f"variant {v.name!r}: match_params_of must name another variant and needs policy mt_mlp")
    for v in spec.variants:
        if v.match_params_of is not None:
            target = _params(names[v.match_params_of], out[v.match_params_of])
            out[v.name] = _bisect_width(v, target)
    return out


def _bisect_width(variant: Variant, target: int) -> list[int]:
    layers = len(variant.widths)
    lo, hi = 1, 4096
    while lo < hi:  # parameter count grows with width: the smallest width reaching target
        mid = (lo + hi) // 2
        if _params(variant, [mid] * layers) < target:
            lo = mid + 1
        else:
            hi = mid
    return [lo] * layers


def evaluate_mt10(model: Any, seed: int, max_episode_steps: int, episodes: int) -> list[float]:
    """Per-task success rate over ``episodes`` deterministic episodes (success at any step)."""
    env = make_mt10(seed, max_episode_steps)
    success = np.zeros(MT10_TASKS)
    try:
        for _ in range(episodes):
            obs = env.reset()
            hit = np.zeros(MT10_TASKS, dtype=bool)
            for _ in range(max_episode_steps):
                action, _ = model.predict(obs, deterministic=True)
                obs, _, dones, infos = env.step(action)
                hit |= np.array([bool(i.get("success", 0.0)) for i in infos])
                if dones.all():
                    break
            success += hit
    finally:
        env.close()
    return list(success / episodes)


def _short(layer: str) -> str:
    """``actor.latent_pi.layers.0`` -> ``actor L0``; ``critic.qf1.trunk.layers.0`` -> ``critic Q2 L0``."""
    parts = layer.split(".")
    q = next((f" Q{int(p[2:]) + 1}" for p in parts if p.startswith("qf") and p[2:].isdigit()), "")
    return f"{parts[0]}{q} L{parts[-1]}"


def run_mt10(spec_path: str | Path, spec: MT10Spec, directory: Path, log: Callable[[str], None]) -> list[str]:
    """Train and evaluate every variant × seed; write ``results.json`` and return the report's body."""
    from rewardlab.moe.sb3 import MoECallback
    from rewardlab.moe.summary import routing_section
    from rewardlab.stats import SUCCESS_BOUNDS, iqm_ci

    widths = _widths(spec)
    rows: list[dict[str, Any]] = []
    for variant in spec.variants:
        for seed in spec.seeds:
            start = time.perf_counter()
            env = make_mt10(seed, spec.max_episode_steps)
            sac = {"batch_size": 256, "learning_starts": 1000, "buffer_size": 1_000_000, "learning_rate": 3e-4,
                   "train_freq": 1, "gradient_steps": 1, **spec.sac}
            try:
                model = MultiTaskSAC(MultiTaskSACPolicy, env, seed=seed, device=spec.device, verbose=0,
                                     policy_kwargs=_policy_kwargs(variant, widths[variant.name]),
                                     per_task_alpha=spec.per_task_alpha, tensorboard_log=str(directory / "tb"), **sac)
            except TypeError as e:
                raise UserError(f"invalid SAC setting in the spec: {e}") from None
            params = count_parameters(model.policy.actor) + count_parameters(model.policy.critic)
            # probe every 1000 steps per task, or often enough for five probes in a short run (change rate needs two)
            probe_every = max(1, min(1000, spec.steps_per_task // 5))
            callback = MoECallback(directory / "diagnostics" / f"{variant.name}_s{seed}", log_freq=100 * MT10_TASKS,
                                   probe_freq=probe_every * MT10_TASKS)
            model.learn(spec.steps_per_task * MT10_TASKS, callback=callback, tb_log_name=f"{variant.name}_s{seed}")
            per_task = evaluate_mt10(model, 10_000 + seed, spec.max_episode_steps, spec.eval_episodes)
            env.close()
            mi = {}  # the latest recorded I(task; expert) of each layer
            for row in callback.history:
                mi.update({k.split("/")[-2]: v for k, v in row.items() if k.endswith("task_expert_mi")})
            alpha = torch.exp(model.log_ent_coef.detach()).tolist() if model.log_ent_coef is not None else []
            rows.append({"variant": variant.name, "seed": seed, "success": float(np.mean(per_task)), "per_task": per_task,
                         "params_actor_critic": params, "widths": widths[variant.name], "wall_s": time.perf_counter() - start,
                         "task_expert_mi": mi, "final_ent_coef": alpha})
            log(f"{variant.name} seed {seed}: success {np.mean(per_task):.2f} ({time.perf_counter() - start:.0f} s)")
    (directory / "results.json").write_text(json.dumps({"spec": spec.model_dump(), "runs": rows}, indent=1))
    lines = ["## Results", "",
             f"MT10 success rate (%), deterministic evaluation, {spec.eval_episodes} episode(s) per task, after "
             f"{spec.steps_per_task} steps per task; IQM over seeds with rliable's stratified-bootstrap 95% interval. "
             "Every variant is MT-SAC (per-task actor and Q heads, the action inside the critic's trunk, twin "
             f"Q-networks) with {'one learned entropy coefficient per task' if spec.per_task_alpha else 'one shared α'}"
             "; the variants differ only in the trunk. α: the final entropy coefficients over tasks (min–max, first seed).", "",
             "| variant | trunk | actor+critic params | seeds | success IQM [95% CI] | mean | α, min–max "
             "| I(task; expert), last batch |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in spec.variants:
        mine = [r for r in rows if r["variant"] == variant.name]
        est = iqm_ci([r["success"] for r in mine], bounds=SUCCESS_BOUNDS)
        trunk = "MLP" if variant.policy == "mt_mlp" else f"MoE {variant.router}, E={variant.n_experts}"
        mi_text = "; ".join(f"{_short(k)}: {np.mean([r['task_expert_mi'].get(k, np.nan) for r in mine]):.2f}"
                            for k in mine[0]["task_expert_mi"]) or "-"
        ci = f"[{100 * est.low:.1f}, {100 * est.high:.1f}]" if est.low is not None and est.high is not None else "(one seed)"
        alpha = mine[0]["final_ent_coef"]
        alpha_text = f"{min(alpha):.3f}–{max(alpha):.3f}" if alpha else "fixed"
        lines.append(f"| {variant.name} | {trunk} {widths[variant.name]} | {mine[0]['params_actor_critic']:,} | {len(mine)} | "
                     f"{100 * est.point:.1f} {ci} | {100 * np.mean([r['success'] for r in mine]):.1f} | {alpha_text} "
                     f"| {mi_text} |")
    routing = routing_section([(f"{v.name} s{seed}", directory / "diagnostics" / f"{v.name}_s{seed}")
                               for v in spec.variants for seed in spec.seeds])
    lines += ["", *routing] if routing else []
    lines += ["", "## Parameter counts", "", *param_table(spec)]
    lines += ["", "## Anchors (not comparable to a CPU smoke run: protocol and budget differ)", "",
              "| method | MT10 success (%) | protocol |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ANCHORS]
    return lines


if __name__ == "__main__":  # the parameter table of a spec, without training: python -m rewardlab.moe.multitask SPEC
    import sys

    import yaml

    from rewardlab.config import validate_config

    if len(sys.argv) != 2:
        print("usage: python -m rewardlab.moe.multitask experiments/moe_mt10_<name>.yaml", file=sys.stderr)
        sys.exit(2)
    try:
        print("\n".join(param_table(validate_config(MT10Spec, yaml.safe_load(Path(sys.argv[1]).read_text()),
                                                     f"spec {sys.argv[1]}"))))
    except (UserError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)  # a user error, as the CLI exits
