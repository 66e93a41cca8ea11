"""Multi-task MetaWorld MT10 pieces (rewardlab/moe/multitask.py): MT-SAC's per-task heads and per-task entropy
coefficients, matched parameter counts, and SAC on the real MT10 vector env for a few steps."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rewardlab.errors import UserError
from rewardlab.moe.layers import AddAuxiliaryLoss, MoEMLP
from rewardlab.moe.multitask import (
    MT10_TASKS,
    MT10Spec,
    MultiTaskQ,
    MultiTaskSAC,
    MultiTaskSACPolicy,
    PerTaskLinear,
    Variant,
    _params,
    _widths,
    param_table,
)

REPO = Path(__file__).resolve().parents[1]


class OneHotEnv(gym.Env):
    """A 2-d state plus a one-hot task id of ``n_tasks``; one action; nothing happens (for building SAC)."""

    def __init__(self, n_tasks: int = 3):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2 + n_tasks,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.obs = np.zeros(2 + n_tasks, np.float32)
        self.obs[2] = 1.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self.obs, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self.obs, 0.0, False, False, {}


def _policy(moe: dict[str, Any] | None = None) -> MultiTaskSACPolicy:
    obs = gym.spaces.Box(-np.inf, np.inf, (5 + 3,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    return MultiTaskSACPolicy(obs, act, lambda _: 3e-4, n_tasks=3, widths=[16, 16], moe=moe)


def test_per_task_linear_picks_the_tasks_head() -> None:
    head = PerTaskLinear(2, 1, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [1.0]]]))
        head.bias.copy_(torch.tensor([[10.0], [20.0], [30.0]]))
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    task = torch.eye(3)[[2, 0, 1]]
    y = head(x, task)
    assert y.flatten().tolist() == [33.0, 11.0, 22.0]  # x·w_t + b_t by hand
    head.zero_grad()
    head(x[:1], task[:1]).sum().backward()  # a task-2 sample: only head 2 learns
    assert head.weight.grad[:2].abs().sum() == 0 and head.bias.grad[:2].abs().sum() == 0
    assert head.weight.grad[2].flatten().tolist() == [1.0, 2.0] and head.bias.grad[2].item() == 1.0


@pytest.mark.parametrize("moe", [None, {"router": "topk", "n_experts": 3}])
def test_mt_sac_policy_is_multi_head_sac(moe: dict[str, Any] | None) -> None:
    policy = _policy(moe)
    actor, critic = policy.actor, policy.critic
    trunk_type = MoEMLP if moe else torch.nn.Module
    assert isinstance(actor.latent_pi, trunk_type) and isinstance(actor.mu, PerTaskLinear)
    assert isinstance(actor.log_std, PerTaskLinear) and actor.mu.weight.shape == (3, 16, 2)
    # twin Q-networks, each its own trunk over [obs, action] and one scalar head per task
    q1, q2 = critic.q_networks
    assert isinstance(q1, MultiTaskQ) and isinstance(q2, MultiTaskQ) and q1.trunk is not q2.trunk
    first = next(p for n, p in q1.named_parameters() if n.startswith("trunk"))
    assert (8 + 2) in first.shape and q1.head.weight.shape == (3, 16, 1)
    # the action enters the trunk: Q is not affine in the action (SB3's linear head on obs features would be)
    torch.manual_seed(0)
    obs = torch.cat([torch.randn(64, 5), torch.eye(3)[torch.randint(0, 3, (64,))]], 1)
    a1, a2 = torch.rand(64, 2) * 2 - 1, torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        q = [critic.q1_forward(obs, a) for a in (a1, a2, (a1 + a2) / 2)]
    assert (q[0] + q[1] - 2 * q[2]).abs().max() > 1e-4
    # a task's action depends only on its own head: changing head 1 leaves task-0 samples unchanged
    task0 = obs[obs[:, 5] == 1]
    before = actor(task0, deterministic=True)
    with torch.no_grad():
        actor.mu.weight[1] += 1.0
    assert torch.equal(actor(task0, deterministic=True), before)


def test_mt_sac_policy_refuses_bad_settings() -> None:
    obs = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    with pytest.raises(UserError, match="n_tasks 4"):
        MultiTaskSACPolicy(obs, act, lambda _: 3e-4, n_tasks=4)
    with pytest.raises(UserError, match="gSDE"):
        MultiTaskSACPolicy(obs, act, lambda _: 3e-4, n_tasks=2, use_sde=True)


def test_per_task_alpha_moves_only_with_its_own_samples() -> None:
    model = MultiTaskSAC(MultiTaskSACPolicy, OneHotEnv(3), seed=0, device="cpu", learning_starts=10, batch_size=4,
                         policy_kwargs={"n_tasks": 3, "widths": [8]})
    assert model.target_entropy == -1.0 and model.log_ent_coef is not None and model.log_ent_coef.shape == (3,)
    with torch.no_grad():
        model.log_ent_coef.copy_(torch.log(torch.tensor([0.5, 2.0, 4.0])))
    # hand-made batch: two task-0 samples, one task-1 sample, no task-2 sample
    obs = torch.tensor([[0.3, 0.1, 1, 0, 0], [0.2, 0.5, 1, 0, 0], [0.9, 0.4, 0, 1, 0]], dtype=torch.float32)
    log_prob = torch.tensor([[2.0], [2.0], [-5.0]])
    alpha, loss = model.entropy_terms(obs, log_prob)
    assert alpha.flatten().tolist() == pytest.approx([0.5, 0.5, 2.0])  # each sample its own task's α
    assert loss is not None
    model.ent_coef_optimizer.zero_grad()
    loss.backward()
    # d loss / d log α_t = -(1/N) Σ_{n of task t} (log π_n + H̄), H̄ = -1: task 0 -(1+1)/3, task 1 +6/3, task 2 0
    assert model.log_ent_coef.grad.tolist() == pytest.approx([-2 / 3, 2.0, 0.0])
    before = model.log_ent_coef.detach().clone()
    model.ent_coef_optimizer.step()
    after = model.log_ent_coef.detach()
    # entropy below target (log π > -H̄) raises α_0; above target lowers α_1; α_2 saw no sample and stays
    assert after[0] > before[0] and after[1] < before[1] and after[2] == before[2]


def test_a_saved_model_keeps_its_per_task_alphas_and_acts_the_same(tmp_path: Path) -> None:
    model = MultiTaskSAC(MultiTaskSACPolicy, OneHotEnv(3), seed=0, device="cpu", learning_starts=10, batch_size=4,
                         policy_kwargs={"n_tasks": 3, "widths": [8]})
    with torch.no_grad():
        model.log_ent_coef.copy_(torch.tensor([-0.5, 0.25, 1.0]))
    model.learn(30)
    model.save(tmp_path / "mt.zip")
    loaded = MultiTaskSAC.load(tmp_path / "mt.zip", env=OneHotEnv(3), device="cpu")
    assert loaded.per_task_alpha and loaded.log_ent_coef is not None
    assert loaded.log_ent_coef.tolist() == pytest.approx(model.log_ent_coef.tolist())
    obs = np.array([[0.3, -0.2, 0, 1, 0], [0.1, 0.4, 0, 0, 1]], np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.learn(20)  # the restored α optimiser steps on the restored per-task α


def test_single_alpha_option_and_its_refusal() -> None:
    shared = MultiTaskSAC(MultiTaskSACPolicy, OneHotEnv(3), seed=0, device="cpu", per_task_alpha=False,
                          policy_kwargs={"n_tasks": 3, "widths": [8]})
    assert shared.log_ent_coef is not None and shared.log_ent_coef.shape == (1,)
    obs = torch.tensor([[0.0, 0.0, 1, 0, 0], [0.0, 0.0, 0, 1, 0]], dtype=torch.float32)
    _, loss = shared.entropy_terms(obs, torch.tensor([[2.0], [-5.0]]))
    assert loss is not None
    loss.backward()
    assert shared.log_ent_coef.grad.tolist() == pytest.approx([-(1.0 - 6.0) / 2])  # one α, every sample
    with pytest.raises(UserError, match="per_task_alpha"):
        MultiTaskSAC("MlpPolicy", OneHotEnv(3), device="cpu")


def test_matched_widths_match_actor_critic_parameters() -> None:
    spec = MT10Spec.model_validate(yaml.safe_load((REPO / "experiments" / "moe_mt10_smoke.yaml").read_text()))
    assert spec.per_task_alpha
    widths = _widths(spec)
    by_name = {v.name: v for v in spec.variants}
    target = _params(by_name["moe-topk"], widths["moe-topk"])
    assert abs(_params(by_name["mtmhsac-matched"], widths["mtmhsac-matched"]) - target) / target < 0.02
    table = param_table(spec)
    row = next(line for line in table if line.startswith("| mtmhsac-matched "))
    assert "× moe-topk" in row and float(row.split("|")[7].split("×")[0]) == pytest.approx(1.0, abs=0.02)
    bad = spec.model_copy(update={"variants": [Variant(name="a", match_params_of="nope")]})
    with pytest.raises(UserError, match="match_params_of"):
        _widths(bad)


def test_full_spec_validates() -> None:
    spec = MT10Spec.model_validate(yaml.safe_load((REPO / "experiments" / "moe_mt10_full.yaml").read_text()))
    assert spec.steps_per_task == 2_000_000 and len(spec.seeds) == 10 and spec.sac["batch_size"] == 1280
    assert spec.per_task_alpha and spec.variants[0].policy == "mt_mlp" and spec.variants[0].widths == [400, 400, 400]


@pytest.mark.slow
def test_the_mt10_report_has_results_parameters_and_routing(tmp_path: Path) -> None:
    from rewardlab.moe.multitask import run_mt10

    spec = MT10Spec(name="tiny", study="mt10", seeds=[0], steps_per_task=60, max_episode_steps=20,
                    sac={"batch_size": 32, "learning_starts": 100},
                    variants=[Variant(name="mlp", widths=[16]),
                              Variant(name="moe", policy="moe", router="topk", n_experts=4, widths=[16],
                                      router_kwargs={"k": 2})])
    lines = run_mt10("tiny.yaml", spec, tmp_path, log=lambda _: None)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["mlp", "moe"] and all(len(r["per_task"]) == MT10_TASKS for r in runs)
    assert all(len(r["final_ent_coef"]) == MT10_TASKS for r in runs)
    report = "\n".join(lines)
    assert "## Results" in report and "## Parameter counts" in report and "## Anchors" in report
    routing = [line for line in lines if line.startswith("| moe s0 |")]
    assert {line.split("|")[2].split("/")[0].strip() for line in routing} == {"actor", "critic"}
    header = next(line for line in lines if line.startswith("| trial | layer |"))
    column = [c.strip() for c in header.split("|")].index("change_rate")
    # a short run still probes several times, so every online MoE layer has a change rate
    assert all(0.0 <= float(line.split("|")[column]) <= 1.0 for line in routing)
    assert not any(line.startswith("| mlp s0 |") for line in lines)  # the dense baseline has no router


@pytest.mark.slow
def test_sac_trains_on_mt10_with_an_moe_trunk() -> None:
    from rewardlab.moe.multitask import _policy_kwargs, make_mt10

    env = make_mt10(0, max_episode_steps=20)
    assert env.num_envs == MT10_TASKS and env.observation_space.shape == (49,)
    variant = Variant(name="v", policy="moe", router="topk", n_experts=4, widths=[16])
    model = MultiTaskSAC(MultiTaskSACPolicy, env, learning_starts=10, batch_size=32, seed=0, device="cpu",
                         policy_kwargs=_policy_kwargs(variant, [16]))
    before, alpha0 = AddAuxiliaryLoss.calls, model.log_ent_coef.detach().clone()
    model.learn(40)
    env.close()
    assert model._n_updates > 0 and AddAuxiliaryLoss.calls > before
    moved = (model.log_ent_coef.detach() != alpha0).tolist()
    assert len(moved) == MT10_TASKS and all(moved)  # every task is in every batch of MT10: each α learns
    assert math.isfinite(float(model.log_ent_coef.detach().sum()))


class TaskEnv(OneHotEnv):
    """:class:`OneHotEnv` of one task ``task`` whose 2-d state is redrawn every step (varied probe rows)."""

    def __init__(self, n_tasks: int, task: int):
        super().__init__(n_tasks)
        self.obs[2:] = np.eye(n_tasks, dtype=np.float32)[task]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.obs[:2] = self.np_random.normal(size=2)
        return self.obs.copy(), 0.0, False, False, {}


def _moe_mt_sac(learning_starts: int = 10) -> MultiTaskSAC:
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([partial(TaskEnv, 3, t) for t in range(3)])  # one sub-env per task, like MT10
    moe = {"router": "topk", "n_experts": 3, "router_kwargs": {"k": 1}}
    return MultiTaskSAC(MultiTaskSACPolicy, env, seed=0, device="cpu", learning_starts=learning_starts, batch_size=8,
                        policy_kwargs={"n_tasks": 3, "widths": [8, 8], "moe": moe})


TRUNKS = ["actor.latent_pi", "critic.qf0.trunk", "critic.qf1.trunk"]  # the online MoE trunks of MultiTaskSACPolicy


def test_callback_probes_every_trunk_of_a_multi_task_policy(tmp_path: Path) -> None:
    from rewardlab.moe.sb3 import MoECallback

    model = _moe_mt_sac()
    # 3 env steps per vector step: the 6-observation probe is full at step 6, probed at 6, 12, ..., 60 and at the end;
    # SAC's first update comes after step 10, so the first probe sees the target critic equal to the online one
    callback = MoECallback(tmp_path, log_freq=6, probe_freq=6, probe_size=6)
    model.learn(60, callback=callback)
    assert model._n_updates > 0
    data = json.loads((tmp_path / "moe_diagnostics.json").read_text())
    keys = {k for row in data["history"] for k in row}
    layers = [f"{trunk}.layers.{i}" for trunk in TRUNKS for i in (0, 1)]
    for layer in layers:
        role = layer.split(".")[0]
        assert f"moe/{role}/{layer}/change_rate" in keys, layer
        assert (f"moe/{role}/{layer}/online_target_agreement" in keys) == (role == "critic"), layer
    agreement = [row[k] for row in data["history"] for k in row if k.endswith("online_target_agreement")]
    assert agreement[:4] == [1.0] * 4  # first probe, before any update: the target is the online critic's copy
    curve = data["saturation_vs_final"]
    assert len(curve) == len(callback.snapshots) >= 3 and sorted(curve[-1]) == sorted(["step", *layers])
    assert all(curve[-1][layer] == 1.0 for layer in layers)
    assert all(0.0 <= row[layer] <= 1.0 for row in curve for layer in layers)
    # by hand: the actor's first trunk layer routes the probe observations; the critics' first layers route
    # [observation, the actor's deterministic action] (topk reads its input, not the task)
    policy = model.policy
    policy.set_training_mode(False)
    final = callback.snapshots[-1][1]
    probe = callback.probe
    assert probe is not None and probe.shape == (6, 5) and probe[:, 2:].sum(0).tolist() == [2.0, 2.0, 2.0]
    with torch.no_grad():
        assert torch.equal(final["actor.latent_pi.layers.0"], policy.actor.latent_pi.layers[0].route(probe).dispatch)
        critic_in = torch.cat([probe, policy.actor(probe, deterministic=True)], 1)
        for q in ("qf0", "qf1"):
            for critic in ("critic", "critic_target"):
                trunk = getattr(getattr(policy, critic), q).trunk
                assert torch.equal(final[f"{critic}.{q}.trunk.layers.0"], trunk.layers[0].route(critic_in).dispatch)


def test_the_probe_leaves_modes_parameters_and_training_routing_alone() -> None:
    from rewardlab.moe.layers import moe_layers
    from rewardlab.moe.sb3 import MoECallback

    model = _moe_mt_sac()
    model.learn(30)  # every layer has a training batch's routing (layer.last)
    callback = MoECallback(None, probe_size=4)
    callback.init_callback(model)
    callback.on_training_start({}, {})
    callback.probe = torch.cat([torch.randn(4, 2), torch.eye(3)[[0, 1, 2, 0]]], 1)
    policy = model.policy
    for actor_mode, critic_mode in ((True, True), (False, False), (True, False)):
        policy.actor.train(actor_mode)
        policy.critic.train(critic_mode)
        modes = {name: m.training for name, m in policy.named_modules()}
        state = {k: v.clone() for k, v in policy.state_dict().items()}
        last = {name: layer.last for name, layer in moe_layers(policy)}
        rng = torch.get_rng_state()
        masks = callback.route_probe()
        assert set(masks) == {f"{t}.layers.{i}" for t in [*TRUNKS, "critic_target.qf0.trunk", "critic_target.qf1.trunk"]
                              for i in (0, 1)}
        assert all(m.shape == (4, 3) and m.dtype == torch.bool for m in masks.values())
        assert {name: m.training for name, m in policy.named_modules()} == modes
        assert all(torch.equal(v, state[k]) for k, v in policy.state_dict().items())
        assert all(layer.last is last[name] for name, layer in moe_layers(policy))  # training stats untouched
        assert torch.equal(torch.get_rng_state(), rng)  # no random number drawn: training's stream is unchanged


def test_parameter_table_entry_point_exits_2_on_user_errors(tmp_path: Path) -> None:
    """Issue 10: ``python -m rewardlab.moe.multitask SPEC`` exits 2 on a user error (as the CLI does), 0 on a good spec."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps_per_task: -1\n")
    for args in ([str(tmp_path / "missing.yaml")], [str(bad)], []):
        done = subprocess.run([sys.executable, "-m", "rewardlab.moe.multitask", *args], capture_output=True, text=True)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    good = subprocess.run([sys.executable, "-m", "rewardlab.moe.multitask", "experiments/moe_mt10_smoke.yaml"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert good.returncode == 0, good.stderr
