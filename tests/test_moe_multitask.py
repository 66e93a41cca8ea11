"""Multi-task MetaWorld MT10 pieces (rewardlab/moe/multitask.py): per-task heads, matched parameter
counts, and SAC on the real MT10 vector env for a few steps."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rewardlab.errors import UserError
from rewardlab.moe.layers import AddAuxiliaryLoss
from rewardlab.moe.multitask import MT10_TASKS, MT10Spec, MultiTaskExtractor, TaskHeads, Variant, _params, _widths

REPO = Path(__file__).resolve().parents[1]


def test_task_heads_give_each_task_its_own_block() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    task = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = TaskHeads(3)(features, task).view(2, 2, 3)
    assert out[0, :, 1].tolist() == [1.0, 2.0] and out[0, :, [0, 2]].abs().sum() == 0
    assert out[1, :, 0].tolist() == [3.0, 4.0]
    # a linear layer on top is one linear head per task: the other tasks' weights get no gradient
    head = torch.nn.Linear(6, 1, bias=False)
    head(TaskHeads(3)(features[:1], task[:1])).sum().backward()
    assert head.weight.grad.view(2, 3)[:, [0, 2]].abs().sum() == 0


@pytest.mark.parametrize("router", ["task_attention", "topk"])
def test_multitask_extractor_routes_on_the_one_hot(router: str) -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (39 + MT10_TASKS,), np.float32)
    extractor = MultiTaskExtractor(space, widths=[16], moe={"router": router, "n_experts": 3})
    obs = torch.cat([torch.randn(5, 39), torch.eye(MT10_TASKS)[:5]], 1)
    assert extractor(obs).shape == (5, 16 * MT10_TASKS)


def test_matched_widths_match_actor_critic_parameters() -> None:
    spec = MT10Spec.model_validate(yaml.safe_load((REPO / "experiments" / "moe_mt10_smoke.yaml").read_text()))
    widths = _widths(spec)
    by_name = {v.name: v for v in spec.variants}
    target = _params(by_name["moe-topk"], widths["moe-topk"])
    assert abs(_params(by_name["mtmhsac-matched"], widths["mtmhsac-matched"]) - target) / target < 0.02
    bad = spec.model_copy(update={"variants": [Variant(name="a", match_params_of="nope")]})
    with pytest.raises(UserError, match="match_params_of"):
        _widths(bad)


def test_full_spec_validates() -> None:
    spec = MT10Spec.model_validate(yaml.safe_load((REPO / "experiments" / "moe_mt10_full.yaml").read_text()))
    assert spec.steps_per_task == 2_000_000 and len(spec.seeds) == 10 and spec.sac["batch_size"] == 1280


@pytest.mark.slow
def test_sac_trains_on_mt10_with_an_moe_trunk() -> None:
    from stable_baselines3 import SAC

    from rewardlab.moe.multitask import _policy_kwargs, make_mt10

    env = make_mt10(0, max_episode_steps=20)
    assert env.num_envs == MT10_TASKS and env.observation_space.shape == (49,)
    variant = Variant(name="v", policy="moe", router="topk", n_experts=4, widths=[16])
    model = SAC("MlpPolicy", env, learning_starts=10, batch_size=32, seed=0, device="cpu",
                policy_kwargs=_policy_kwargs(variant, [16]))
    before = AddAuxiliaryLoss.calls
    model.learn(40)
    env.close()
    assert model._n_updates > 0 and AddAuxiliaryLoss.calls > before
