"""MoE policies inside stable-baselines3 (rewardlab/moe/sb3.py): aux losses reach PPO's and SAC's
optimisers, acting is deterministic and batch-independent, diagnostics reach TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
import torch
from stable_baselines3 import PPO, SAC

from rewardlab.errors import UserError
from rewardlab.moe.layers import AddAuxiliaryLoss, moe_layers
from rewardlab.moe.sb3 import TESTED_SB3, MoECallback, MoEExtractor, moe_policy_kwargs
from rewardlab.training.presets import policy_kwargs


def _kwargs(algo: str, router: str = "topk", **extra: object) -> dict:
    return policy_kwargs(moe_policy_kwargs(algo, router, n_experts=4, widths=[16, 16], **extra))  # type: ignore[arg-type]


def test_the_tested_sb3_version_is_installed() -> None:
    assert stable_baselines3.__version__ == TESTED_SB3


def test_moe_is_a_registered_extractor() -> None:
    assert policy_kwargs({"features_extractor_class": "moe"})["features_extractor_class"] is MoEExtractor
    with pytest.raises(UserError, match="unknown router"):
        moe_policy_kwargs("ppo", "top_k")


def test_ppo_update_backpropagates_the_aux_loss_once_per_minibatch() -> None:
    env = gym.make("Pendulum-v1")
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu",
                policy_kwargs=_kwargs("ppo"))
    assert len(moe_layers(model.policy)) == 2
    before = AddAuxiliaryLoss.calls
    model.learn(64)
    assert model._n_updates == 2  # epochs
    assert AddAuxiliaryLoss.calls - before == 2 * (64 // 32) * 2  # minibatches x epochs x MoE layers


def test_sac_update_backpropagates_the_aux_loss_of_actor_and_critic() -> None:
    env = gym.make("Pendulum-v1")
    model = SAC("MlpPolicy", env, learning_starts=10, batch_size=16, seed=0, device="cpu", policy_kwargs=_kwargs("sac"))
    names = [n for n, _ in moe_layers(model.policy)]
    assert any(n.startswith("actor.") for n in names) and any(n.startswith("critic.") for n in names)
    before = AddAuxiliaryLoss.calls
    model.learn(30)
    updates = model._n_updates
    assert updates > 0
    # per update and MoE layer: the critic loss (critic), the actor loss (actor, and critic through Q(s, π(s)))
    assert AddAuxiliaryLoss.calls - before == updates * 3 * 2
    # the router's weights moved: its gradient reached the optimiser
    critic_router = dict(moe_layers(model.policy))["critic.features_extractor.mlp.layers.0"].router
    fresh = SAC("MlpPolicy", env, learning_starts=10, batch_size=16, seed=0, device="cpu", policy_kwargs=_kwargs("sac"))
    fresh_router = dict(moe_layers(fresh.policy))["critic.features_extractor.mlp.layers.0"].router
    assert not torch.equal(critic_router.gate.weight, fresh_router.gate.weight)


@pytest.mark.parametrize("router", ["expert_choice", "dense_to_sparse", "topk", "soft_moe"])
def test_acting_does_not_depend_on_the_rest_of_the_batch(router: str) -> None:
    env = gym.make("Pendulum-v1")
    extra = {"router_kwargs": {"capacity_factor": 1.0}} if router == "topk" else {}
    model = SAC("MlpPolicy", env, learning_starts=10, batch_size=16, seed=0, device="cpu",
                policy_kwargs=_kwargs("sac", router, **extra))
    model.learn(30)
    obs = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    batch, _ = model.predict(obs, deterministic=True)
    alone = np.concatenate([model.predict(obs[i : i + 1], deterministic=True)[0] for i in range(9)])
    np.testing.assert_allclose(batch, alone, atol=1e-6)


def test_same_seed_same_policy() -> None:
    def run() -> np.ndarray:
        model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=32, n_epochs=1, seed=3, device="cpu",
                    policy_kwargs=_kwargs("ppo", "dense_to_sparse"))
        model.learn(64)
        return model.predict(np.zeros((1, 3), dtype=np.float32), deterministic=True)[0]

    np.testing.assert_array_equal(run(), run())


def test_callback_logs_diagnostics_and_saturation(tmp_path: Path) -> None:
    env = gym.make("Pendulum-v1")
    model = SAC("MlpPolicy", env, learning_starts=10, batch_size=16, seed=0, device="cpu",
                policy_kwargs=_kwargs("sac", "dense_to_sparse", router_kwargs={"decay_updates": 20, "tau_min": 0.1}),
                tensorboard_log=str(tmp_path / "tb"))
    callback = MoECallback(tmp_path, log_freq=10, probe_freq=20, probe_size=16)
    model.learn(60, callback=callback)
    data = json.loads((tmp_path / "moe_diagnostics.json").read_text())
    keys = {k for row in data["history"] for k in row}
    layer = "moe/critic/critic.features_extractor.mlp.layers.0"
    for metric in ("load_imbalance", "router_entropy", "active_experts", "drop_rate", "temperature", "change_rate",
                   "online_target_agreement"):
        assert f"{layer}/{metric}" in keys, metric
    assert data["saturation_vs_final"][-1]["critic.features_extractor.mlp.layers.0"] == 1.0
    # probes at 20, 40 and 60 (the last step): the end of training does not probe step 60 again
    assert [row["step"] for row in data["saturation_vs_final"]] == [20, 40, 60]
    changes = [row for row in data["history"] if f"{layer}/change_rate" in row]
    assert [row["step"] for row in changes] == [40, 60]
    router = dict(moe_layers(model.policy))["actor.features_extractor.mlp.layers.0"].router
    assert int(router.num_updates) == model._n_updates  # the schedule clock follows gradient updates
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_rewardlab_trainer_runs_an_moe_policy(tmp_path: Path) -> None:
    from rewardlab.training import train

    result = train("mujoco/InvertedPendulum-v5", "env", "ppo", steps=512, seed=0, run_dir=tmp_path, eval_episodes=1,
                   preset_overrides={"n_steps": 128, "policy_kwargs": moe_policy_kwargs("ppo", "norm_sigmoid", widths=[16])})
    assert result.steps >= 512
    assert (tmp_path / "moe_diagnostics.json").exists()
    from rewardlab.moe.summary import routing_section

    assert any("router_entropy" in line for line in routing_section([("t", tmp_path)]))


def test_run_report_shows_routing(tmp_path: Path) -> None:
    from rewardlab.moe.summary import routing_section

    (tmp_path / "moe_diagnostics.json").write_text(json.dumps({"history": [
        {"step": 10, "moe/actor/actor.x.layers.0/load_imbalance": 1.5, "moe/actor/actor.x.layers.0/drop_rate": 0.0},
        {"step": 20, "moe/actor/actor.x.layers.0/load_imbalance": 1.25, "moe/actor/actor.x.layers.0/utilization/0": 0.5}]}))
    lines = routing_section([("task|env|sac|0", tmp_path), ("no-moe", tmp_path / "missing")])
    row = next(line for line in lines if line.startswith("| task"))
    assert row.startswith("| task\\|env\\|sac\\|0 |")
    assert "| actor/actor.x.layers.0 | 1.25 |" in row
    assert sum(line.startswith("| task") for line in lines) == 1  # utilization/0 is a metric, not a layer
    assert routing_section([("no-moe", tmp_path / "missing")]) == []


def test_evomoe_spawn_resets_the_optimiser_state_of_the_copies(tmp_path: Path) -> None:
    env = gym.make("Pendulum-v1")
    model = SAC("MlpPolicy", env, learning_starts=10, batch_size=16, seed=0, device="cpu",
                policy_kwargs=_kwargs("sac", "dense_to_sparse", router_kwargs={"diversify_updates": 5}))
    callback = MoECallback(None, log_freq=10, probe_freq=1000)
    model.learn(40, callback=callback)
    layer = dict(moe_layers(model.policy))["actor.features_extractor.mlp.layers.0"]
    assert int(layer.spawned_at) >= 5
    assert "actor.features_extractor.mlp.layers.0" in callback._spawned
    steps = int(model.policy.actor.optimizer.state[layer.weight]["step"])
    assert steps < model._n_updates  # Adam restarted at the spawn
    assert not torch.equal(layer.weight[1], layer.weight[2])


def test_spec_with_an_moe_policy_validates() -> None:
    from rewardlab.runs.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "moe_ppo_pendulum.yaml")
    kwargs = policy_kwargs(spec.hyperparameters["policy_kwargs"])
    assert kwargs["features_extractor_class"] is MoEExtractor


def test_td3_takes_an_moe_policy_too() -> None:
    from stable_baselines3 import TD3

    model = TD3("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=10, batch_size=16, seed=0, device="cpu",
                policy_kwargs=_kwargs("td3", "tsallis"))
    before = AddAuxiliaryLoss.calls
    model.learn(30)
    assert AddAuxiliaryLoss.calls > before


def test_cli_moe_flags_are_checked_in_one_line() -> None:
    from typer.testing import CliRunner

    from rewardlab.cli import app

    runner = CliRunner()
    for args, message in [(["--router", "topk"], "--router and --experts need --policy moe"),
                          (["--policy", "moe", "--router", "topp"], "unknown router 'topp'"),
                          (["--policy", "nope"], "--policy must be mlp or moe")]:
        result = runner.invoke(app, ["train", "--env", "mujoco/InvertedPendulum-v5", "--steps", "1000", *args])
        # a UserError: rewardlab.cli.main prints it as one line and exits 2
        assert isinstance(result.exception, UserError), result.output
        assert message in str(result.exception) and "\n" not in str(result.exception)


def test_cli_moe_messages_name_what_the_cli_user_can_change() -> None:
    """Issue 10: router defaults the CLI cannot set are explained by --experts; a non-SB3 trainer is refused by
    name, not by its internal hyperparameter list; --help gives --router's default and the routers."""
    from typer.testing import CliRunner

    from rewardlab.cli import app

    runner = CliRunner()
    for args, message in [(["--experts", "1"], "--experts 1 does not fit --router topk with its default settings, "
                                                "which the CLI cannot change"),
                          (["--experts", "1"], "use --experts >= 2"),
                          (["--router", "norm_sigmoid", "--experts", "1"], "use --experts >= 2"),
                          (["--router", "prototyping", "--experts", "3"], "use --experts 2, 4, 6"),
                          (["--trainer", "tabular"], "--policy moe needs the SB3 trainer"),
                          (["--trainer", "gpu"], "got --trainer gpu")]:
        result = runner.invoke(app, ["train", "--env", "mujoco/InvertedPendulum-v5", "--steps", "1000",
                                     "--policy", "moe", *args])
        assert isinstance(result.exception, UserError), result.output
        assert message in str(result.exception) and "\n" not in str(result.exception), str(result.exception)
        assert "policy_kwargs, " not in str(result.exception) and "not policy_kwargs" not in str(result.exception)
    text = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=200).output.split())
    assert "default topk" in text.replace("│ ", "")
    for name in ("topk", "prototyping", "expert_choice", "norm_sigmoid", "soft_moe", "tsallis"):
        assert name in text
