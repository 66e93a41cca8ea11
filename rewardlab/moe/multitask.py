"""Multi-task MetaWorld (MT10, v3) with multi-head SAC and MoE-SAC variants at matched parameter counts.

Environment (research note §5): ``gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=s,
use_one_hot=True, max_episode_steps=H)`` — ten envs, one per task, each observation the 39-d state plus a
10-d one-hot task id, the V2 reward (MetaWorld's default ``reward_function_version="v2"``); its
sub-envs are wrapped in SB3's ``DummyVecEnv`` (SB3 cannot ingest a gymnasium ``VectorEnv``, SB3 issue
#1745). One SAC agent trains on all ten (every vector step adds one transition per task, so ``steps
per task`` = vector steps, mtrl's convention).

Policies (actor and critic alike, SAC's separate extractors):

- ``mt_mlp``: multi-head SAC (MTMHSAC): a shared MLP trunk, then per-task output heads;
- ``moe``: the trunk is an :class:`~rewardlab.moe.layers.MoEMLP` with any router (``task_attention``
  is CARE-like), then the same per-task heads.

Per-task heads are made by :class:`TaskHeads`: the trunk's features times the one-hot task id (an
outer product, ``features_dim = width × n_tasks``), so SB3's linear output layer *is* one linear head
per task. Deviation: the critic's head also sees the action through one shared linear block (SB3's
``ContinuousCritic`` concatenates features and action), where MTMHSAC's critic heads are wholly per
task; and one entropy coefficient for all tasks (MTMHSAC learns one per task).

Evaluation: deterministic, ``eval_episodes`` episodes per task on envs seeded apart from training;
success = MetaWorld's ``info["success"]`` at any step (mtrl, Meta-World+). Aggregates over seeds: the
IQM with rliable's stratified-bootstrap 95% interval (:func:`rewardlab.stats.iqm_ci`), and the mean.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

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


class TaskHeads(nn.Module):
    """Per-task output heads from a shared trunk: ``features ⊗ onehot(task)`` flattened, ``(N, width·T)``."""

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks

    def forward(self, features: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return (features.unsqueeze(-1) * task.unsqueeze(1)).flatten(1)


class MultiTaskExtractor(BaseFeaturesExtractor):
    """Trunk (dense MLP or MoE MLP) over the whole observation, then per-task heads (:class:`TaskHeads`).

    :param observation_space: flat ``Box``; the last ``n_tasks`` entries are the one-hot task id
    :param n_tasks: number of tasks
    :param widths: trunk layer widths
    :param moe: ``None`` for a dense trunk, else :class:`MoEMLP` settings (``router``, ``n_experts``, ...)
    """

    def __init__(self, observation_space: gym.Space, n_tasks: int = MT10_TASKS, widths: list[int] | tuple[int, ...] = (400, 400),
                 moe: dict[str, Any] | None = None):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise UserError(f"the multi-task extractor needs a flat Box observation space (got {observation_space})")
        d_in = int(observation_space.shape[0])
        widths = [int(w) for w in widths]
        super().__init__(observation_space, features_dim=widths[-1] * n_tasks)
        self.n_tasks = n_tasks
        self.trunk: nn.Module
        if moe is None:
            layers: list[nn.Module] = []
            for w_in, w_out in zip([d_in, *widths[:-1]], widths):
                layers += [nn.Linear(w_in, w_out), nn.ReLU()]
            self.trunk = nn.Sequential(*layers)
        else:
            self.trunk = MoEMLP(d_in, widths, n_tasks=n_tasks, **moe)
        self.heads = TaskHeads(n_tasks)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.flatten(1).float()
        task = x[:, -self.n_tasks:]
        h = self.trunk(x, task) if isinstance(self.trunk, MoEMLP) else self.trunk(x)
        return self.heads(h, task)


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
    moe = None if variant.policy == "mt_mlp" else {
        "router": variant.router, "n_experts": variant.n_experts, "n_shared": variant.n_shared,
        "router_kwargs": dict(variant.router_kwargs)}
    return {"features_extractor_class": MultiTaskExtractor,
            "features_extractor_kwargs": {"n_tasks": MT10_TASKS, "widths": widths, "moe": moe}, "net_arch": []}


def _params(variant: Variant, widths: list[int], d_in: int = 39 + MT10_TASKS, d_act: int = 4) -> int:
    """Parameters of the SAC actor and critic (online) that ``variant`` builds with trunk ``widths``."""
    from stable_baselines3.sac.policies import SACPolicy

    obs = gym.spaces.Box(-np.inf, np.inf, (d_in,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (d_act,), np.float32)
    policy = SACPolicy(obs, act, lambda _: 3e-4, **_policy_kwargs(variant, widths))
    return count_parameters(policy.actor) + count_parameters(policy.critic)


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
    """``actor.features_extractor.trunk.layers.0`` -> ``actor L0``."""
    return f"{layer.split('.')[0]} L{layer.rsplit('.', 1)[-1]}"


def run_mt10(spec_path: str | Path, spec: MT10Spec, directory: Path, log: Callable[[str], None]) -> list[str]:
    """Train and evaluate every variant × seed; write ``results.json`` and return the report's body."""
    from stable_baselines3 import SAC

    from rewardlab.moe.sb3 import MoECallback
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
                model = SAC("MlpPolicy", env, seed=seed, device=spec.device, verbose=0,
                            policy_kwargs=_policy_kwargs(variant, widths[variant.name]),
                            tensorboard_log=str(directory / "tb"), **sac)
            except TypeError as e:
                raise UserError(f"invalid SAC setting in the spec: {e}") from None
            params = count_parameters(model.policy.actor) + count_parameters(model.policy.critic)
            callback = MoECallback(directory / "diagnostics" / f"{variant.name}_s{seed}", log_freq=100 * MT10_TASKS,
                                   probe_freq=1000 * MT10_TASKS)
            model.learn(spec.steps_per_task * MT10_TASKS, callback=callback, tb_log_name=f"{variant.name}_s{seed}")
            per_task = evaluate_mt10(model, 10_000 + seed, spec.max_episode_steps, spec.eval_episodes)
            env.close()
            mi = {}  # the latest recorded I(task; expert) of each layer
            for row in callback.history:
                mi.update({k.split("/")[-2]: v for k, v in row.items() if k.endswith("task_expert_mi")})
            rows.append({"variant": variant.name, "seed": seed, "success": float(np.mean(per_task)), "per_task": per_task,
                         "params_actor_critic": params, "widths": widths[variant.name], "wall_s": time.perf_counter() - start,
                         "task_expert_mi": mi})
            log(f"{variant.name} seed {seed}: success {np.mean(per_task):.2f} ({time.perf_counter() - start:.0f} s)")
    (directory / "results.json").write_text(json.dumps({"spec": spec.model_dump(), "runs": rows}, indent=1))
    lines = ["## Results", "",
             f"MT10 success rate (%), deterministic evaluation, {spec.eval_episodes} episode(s) per task, after "
             f"{spec.steps_per_task} steps per task; IQM over seeds with rliable's stratified-bootstrap 95% interval.", "",
             "| variant | trunk | actor+critic params | seeds | success IQM [95% CI] | mean | I(task; expert), last batch |",
             "|---|---|---|---|---|---|---|"]
    for variant in spec.variants:
        mine = [r for r in rows if r["variant"] == variant.name]
        est = iqm_ci([r["success"] for r in mine], bounds=SUCCESS_BOUNDS)
        trunk = "MLP" if variant.policy == "mt_mlp" else f"MoE {variant.router}, E={variant.n_experts}"
        mi_text = "; ".join(f"{_short(k)}: {np.mean([r['task_expert_mi'].get(k, np.nan) for r in mine]):.2f}"
                            for k in mine[0]["task_expert_mi"]) or "-"
        ci = f"[{100 * est.low:.1f}, {100 * est.high:.1f}]" if est.low is not None and est.high is not None else "(one seed)"
        lines.append(f"| {variant.name} | {trunk} {widths[variant.name]} | {mine[0]['params_actor_critic']:,} | {len(mine)} | "
                     f"{100 * est.point:.1f} {ci} | {100 * np.mean([r['success'] for r in mine]):.1f} | {mi_text} |")
    lines += ["", "## Anchors (not comparable to a CPU smoke run: protocol and budget differ)", "",
              "| method | MT10 success (%) | protocol |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ANCHORS]
    return lines
