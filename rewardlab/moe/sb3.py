"""Mixture-of-experts policies for any stable-baselines3 algorithm, and their routing diagnostics.

:class:`MoEExtractor` is an SB3 ``BaseFeaturesExtractor`` (registered as ``moe``), so an MoE policy is
SB3's own policy with ``policy_kwargs``::

    policy_kwargs = {"features_extractor_class": "moe",
                     "features_extractor_kwargs": {"router": "topk", "n_experts": 4, "widths": [256, 256]},
                     "net_arch": []}              # PPO: {"pi": [], "vf": []}

(:func:`moe_policy_kwargs` builds exactly this; ``rewardlab train --policy moe --router NAME`` and a
spec's ``hyperparameters: {policy_kwargs: ...}`` both use it). SAC and TD3 build separate extractors for
the actor and the critic (SB3's default ``share_features_extractor=False``), so both are MoE networks;
PPO shares one by default.

**How the aux loss reaches the optimiser (decision).** Each :class:`~rewardlab.moe.layers.MoELayer`
attaches its router's aux loss to its output with DeepSeek-MoE's ``AddAuxiliaryLoss`` identity in
training forwards. Any loss computed from that output carries it to the optimiser: PPO's combined loss
(one backward per minibatch), SAC's critic loss and its actor loss (the actor's extractor, and the
critic's through ``Q(s, π(s))``; the critic gradients of the actor loss are cleared by the critic's next
``zero_grad``, as SB3 already does for its own terms). Target forwards run under ``no_grad`` and attach
nothing. No SB3 class is subclassed or patched; the mechanism relies only on SB3 computing its losses
from the policy's forward under gradient, which ``tests/test_moe_sb3.py`` checks against the installed
version (:data:`TESTED_SB3`: exact counts of aux backward passes per PPO and SAC update).

:class:`MoECallback` sets every router's schedule clock to the algorithm's gradient-update count
(``model._n_updates``), resets the optimiser state of experts EvoMoE spawns, and logs the diagnostics of
:mod:`rewardlab.moe.diagnostics` to TensorBoard under ``moe/<actor|critic|shared>/<layer>/...`` and to
``moe_diagnostics.json`` in the trial directory. Its fixed probe batch reaches every MoE layer of the
policy, wherever the layers sit, through :func:`route_probe`: SB3's policies (MoE layers in extractors) and
:class:`~rewardlab.moe.multitask.MultiTaskSACPolicy` (MoE trunks in the actor and in each Q-network) alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from rewardlab.errors import UserError
from rewardlab.moe.diagnostics import change_rate, routing_stats, saturation
from rewardlab.moe.layers import MoELayer, MoEMLP, SoftMoELayer, moe_layers

#: The stable-baselines3 version the aux-loss path is tested against (tests/test_moe_sb3.py).
TESTED_SB3 = "2.9.2"


class MoEExtractor(BaseFeaturesExtractor):
    """An MoE MLP as an SB3 features extractor: flattened observation -> :class:`MoEMLP` -> features.

    :param observation_space: a flat ``Box`` observation space
    :param router: router name (:data:`rewardlab.moe.routers.ROUTER_CLASSES`)
    :param n_experts: routed experts per layer
    :param widths: widths of the MoE layers; the last is the features' width
    :param n_shared: shared experts per layer
    :param router_kwargs: the router's settings (``k``, ``capacity_factor``, ...)
    :param n_tasks: the observation ends with a one-hot task id of this width (MetaWorld MT10's
        ``use_one_hot``); routers that read the task (``task_attention``) get it. 0: single task
    :param compute: ``dense`` or ``grouped``
    :raises UserError: a non-flat observation space, or ``n_tasks`` wider than the observation
    """

    def __init__(self, observation_space: gym.Space, router: str = "topk", n_experts: int = 4,
                 widths: list[int] | tuple[int, ...] = (256, 256), n_shared: int = 0,
                 router_kwargs: dict[str, Any] | None = None, n_tasks: int = 0, compute: str = "dense"):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise UserError(f"the moe extractor needs a flat Box observation space (got {observation_space})")
        d_in = int(observation_space.shape[0])
        if not 0 <= n_tasks < d_in:
            raise UserError(f"n_tasks {n_tasks} must be >= 0 and less than the observation width {d_in}")
        widths = [int(w) for w in widths]
        super().__init__(observation_space, features_dim=widths[-1] if widths else 1)
        self.n_tasks = n_tasks
        self.mlp = MoEMLP(d_in, widths, router=router, n_experts=n_experts, n_shared=n_shared,
                          router_kwargs=router_kwargs, n_tasks=n_tasks, compute=compute)

    @classmethod
    def check_kwargs(cls, **kwargs: Any) -> None:
        """Build the extractor once on a stand-in observation space wide enough for its ``n_tasks``, so
        a router name, ``k``, ``n_experts`` or width it refuses is refused while validating (the real
        width is checked when the policy is built).

        :raises UserError: what :class:`MoEExtractor` and its router refuse
        """
        n_tasks = kwargs.get("n_tasks", 0)
        width = (n_tasks if isinstance(n_tasks, int) and n_tasks > 0 else 0) + 4
        cls(gym.spaces.Box(-np.inf, np.inf, (width,), np.float32), **kwargs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.flatten(1).float()
        task = x[:, -self.n_tasks:] if self.n_tasks else None
        return self.mlp(x, task)


def moe_policy_kwargs(algo: str, router: str, n_experts: int = 4, widths: list[int] | None = None, n_shared: int = 0,
                      router_kwargs: dict[str, Any] | None = None, n_tasks: int = 0, compute: str = "dense",
                      share_features_extractor: bool | None = None) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` that make ``algo``'s policy an MoE policy: the MoE extractor, then linear
    heads (the MoE layers are the hidden layers).

    :param algo: ``ppo``, ``sac`` or ``td3`` (PPO's ``net_arch`` is a dict)
    :raises UserError: an unknown router name (checked here, before anything is built)
    """
    from rewardlab.moe.routers import make_router

    make_router(router, 4, max(n_experts, 1), **(router_kwargs or {})) if router != "task_attention" else None
    kwargs: dict[str, Any] = {
        "features_extractor_class": "moe",
        "features_extractor_kwargs": {"router": router, "n_experts": n_experts, "widths": list(widths or [256, 256]),
                                      "n_shared": n_shared, "router_kwargs": dict(router_kwargs or {}),
                                      "n_tasks": n_tasks, "compute": compute},
        "net_arch": {"pi": [], "vf": []} if algo == "ppo" else [],
    }
    if share_features_extractor is not None:
        kwargs["share_features_extractor"] = share_features_extractor
    return kwargs


def route_probe(policy: BasePolicy, obs: torch.Tensor) -> None:
    """Run every MoE layer of ``policy`` on a probe batch as training feeds it, so that each layer's
    ``last_eval`` holds the probe's routing. The caller puts the policy in eval mode under ``no_grad``
    (:meth:`MoECallback.route_probe`).

    - SAC and TD3 policies (SB3's, and :class:`~rewardlab.moe.multitask.MultiTaskSACPolicy`, whose MoE
      trunks are the actor's ``latent_pi`` and each Q-network's trunk over ``[observation, action]``, with
      no extractor): the actor on the observations, then the online and the target critic on the
      observations and the actor's deterministic action (the action is the critic trunk's input, so an
      action is needed; the deterministic one consumes no random numbers and is the same at every probe
      for the same actor).
    - any other policy (PPO's): each :class:`MoEExtractor` on the observations (SB3 builds MoE layers
      nowhere else).

    :param policy: the model's policy
    :param obs: ``(P, d_obs)`` float observations on the policy's device
    """
    if isinstance(policy, (SACPolicy, TD3Policy)):
        action = policy._predict(obs, deterministic=True)  # SAC: the mean's tanh; TD3: its actor's output
        policy.critic(obs, action)
        policy.critic_target(obs, action)
        return
    for module in policy.modules():
        if isinstance(module, MoEExtractor):
            module(obs)


def _role(name: str) -> str:
    if "target" in name:
        return "target"
    if name.startswith("actor") or name.startswith("pi_"):
        return "actor"
    if name.startswith("critic") or name.startswith("vf_") or name.startswith("value"):
        return "critic"
    return "shared"


def _optimizers(policy: nn.Module) -> list[torch.optim.Optimizer]:
    found = [getattr(policy, "optimizer", None)]
    found += [getattr(getattr(policy, part, None), "optimizer", None) for part in ("actor", "critic")]
    return [o for o in found if isinstance(o, torch.optim.Optimizer)]


class MoECallback(BaseCallback):
    """Routing diagnostics and schedules for an SB3 model whose policy holds MoE layers.

    Every step it sets each router's ``num_updates`` to ``model._n_updates`` (so within one PPO update
    phase the clock stands at the phase's start: schedules advance per env step, not per minibatch). Every ``log_freq`` steps it
    records :func:`~rewardlab.moe.diagnostics.routing_stats` of each layer's latest training batch. Every
    ``probe_freq`` steps it routes a fixed probe batch (the first ``probe_size`` observations seen) through
    every MoE layer in eval mode (:func:`route_probe`) and records the change rate since the previous
    probe and, for SAC/TD3 critics, the online/target agreement (saturation of the target's choices
    against the online critic's). At the end it computes the saturation of every probe against the final
    one and writes ``moe_diagnostics.json``.

    :param save_path: directory of ``moe_diagnostics.json`` (None: not written)
    :param log_freq: env steps between batch-stat records
    :param probe_freq: env steps between probes
    :param probe_size: observations in the probe batch
    """

    def __init__(self, save_path: Path | None = None, log_freq: int = 1000, probe_freq: int = 5000, probe_size: int = 256):
        super().__init__()
        self.save_path = Path(save_path) if save_path is not None else None
        self.log_freq, self.probe_freq, self.probe_size = log_freq, probe_freq, probe_size
        self.layers: list[tuple[str, MoELayer | SoftMoELayer]] = []
        self._probe_obs: list[np.ndarray] = []
        self.probe: torch.Tensor | None = None
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.history: list[dict[str, float]] = []
        self._spawned: set[str] = set()

    def _on_training_start(self) -> None:
        policy = self.model.policy
        self.layers = moe_layers(policy)

    def _sync(self) -> None:
        n_updates = int(getattr(self.model, "_n_updates", 0))
        for name, layer in self.layers:
            layer.router.set_updates(n_updates)
            if isinstance(layer, MoELayer) and int(layer.spawned_at) >= 0 and name not in self._spawned:
                # EvoMoE spawn: fresh Adam moments for the copies
                self._spawned.add(name)
                for opt in _optimizers(self.model.policy):
                    for p in (layer.weight, layer.bias):
                        opt.state.pop(p, None)

    def _collect_probe(self) -> None:
        if self.probe is not None:
            return
        obs = self.locals.get("new_obs")
        if isinstance(obs, np.ndarray):
            self._probe_obs.append(obs.reshape(obs.shape[0], -1))
            if sum(len(o) for o in self._probe_obs) >= self.probe_size:
                self.probe = torch.as_tensor(np.concatenate(self._probe_obs)[: self.probe_size], dtype=torch.float32)

    def route_probe(self) -> dict[str, torch.Tensor]:
        """Each MoE layer's dispatch mask ``(P, E)`` on the probe batch (on the CPU), keyed by the layer's
        name in the policy; the policy is routed in eval mode (:func:`route_probe`) and left in the
        train/eval mode of each of its modules as found, its parameters and the training-batch routing
        (``layer.last``) untouched."""
        assert self.probe is not None
        policy = self.model.policy
        modes = [(m, m.training) for m in policy.modules()]  # per module: SAC's target critic stays in eval
        for _, layer in self.layers:
            layer.last_eval = None  # an acting forward's routing must not pass for the probe's
        policy.train(False)
        try:
            with torch.no_grad():
                route_probe(policy, self.probe.to(policy.device))
        finally:
            for module, mode in modes:
                module.training = mode
        return {name: layer.last_eval.dispatch.to("cpu", copy=True) for name, layer in self.layers
                if layer.last_eval is not None}

    def _record(self, key: str, value: float) -> None:
        self.logger.record(key, value)
        self.history[-1][key] = value

    def _on_step(self) -> bool:
        self._sync()
        self._collect_probe()
        n = self.num_timesteps
        if n % self.log_freq < self.training_env.num_envs:
            self.record_batch_stats()
        if self.probe is not None and n % self.probe_freq < self.training_env.num_envs:
            self.probe_now()
        return True

    def record_batch_stats(self) -> None:
        """Record the routing stats of every layer's latest training batch."""
        self.history.append({"step": float(self.num_timesteps)})
        for name, layer in self.layers:
            if layer.last is None or _role(name) == "target":
                continue
            for key, value in routing_stats(layer.last, layer.last_task).items():
                self._record(f"moe/{_role(name)}/{name}/{key}", value)

    def probe_now(self) -> None:
        """Route the probe batch; record change rate and online/target agreement."""
        masks = self.route_probe()
        if not self.history or self.history[-1].get("step") != float(self.num_timesteps):
            self.history.append({"step": float(self.num_timesteps)})
        if self.snapshots:
            previous = self.snapshots[-1][1]
            for name, mask in masks.items():
                if _role(name) != "target":
                    self._record(f"moe/{_role(name)}/{name}/change_rate", change_rate(previous[name], mask))
        for name, mask in masks.items():
            if _role(name) == "target":
                online = name.replace("critic_target", "critic", 1)
                if online in masks:
                    self._record(f"moe/critic/{online}/online_target_agreement", saturation(mask, masks[online]))
        self.snapshots.append((self.num_timesteps, masks))

    def _on_training_end(self) -> None:
        self._sync()
        self.record_batch_stats()
        if self.probe is None:
            return
        if not self.snapshots or self.snapshots[-1][0] != self.num_timesteps:
            self.probe_now()  # not twice at one step: the repeat would record a change rate of 0
        final = self.snapshots[-1][1]
        curve = [{"step": step, **{name: saturation(m, final[name]) for name, m in masks.items() if _role(name) != "target"}}
                 for step, masks in self.snapshots]
        if self.save_path is not None:
            self.save_path.mkdir(parents=True, exist_ok=True)
            (self.save_path / "moe_diagnostics.json").write_text(json.dumps(
                {"saturation_vs_final": curve, "history": self.history}, indent=1))
        self.saturation_curve = curve


def moe_callbacks(model: Any, save_path: Path | None = None) -> list[BaseCallback]:
    """``[MoECallback]`` when ``model``'s policy holds MoE layers, else ``[]`` (what trainers add)."""
    if not moe_layers(model.policy):
        return []
    import stable_baselines3

    if stable_baselines3.__version__ != TESTED_SB3:
        import warnings

        warnings.warn(f"MoE aux losses are tested with stable-baselines3 {TESTED_SB3}, not {stable_baselines3.__version__}: "
                      "run tests/test_moe_sb3.py", stacklevel=2)
    return [MoECallback(save_path)]
