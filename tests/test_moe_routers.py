"""Routers and the MoE layer against hand-computed cases (rewardlab/moe/routers.py, layers.py)."""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.errors import UserError
from rewardlab.moe.layers import AddAuxiliaryLoss, MoELayer, MoEMLP, count_parameters
from rewardlab.moe.routers import (
    ROUTER_CLASSES,
    DenseToSparseRouter,
    ExpertChoiceRouter,
    ExpertPrototypingRouter,
    ModifiedSoftmaxRouter,
    NormalizedSigmoidRouter,
    Router,
    TopKSoftmaxRouter,
    TsallisHybridRouter,
    make_router,
    switch_balance_loss,
    tsallis_entropy,
)

# reading hand-checked values out of tensors that carry gradients is intended here
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def identity_gate(router: Router) -> Router:
    """Make the router's logits equal its input (d_in == E), so cases can be computed by hand."""
    with torch.no_grad():
        router.gate.weight.copy_(torch.eye(router.n_experts))
        router.gate.bias.zero_()
    return router


def test_topk_capacity_drops_the_lowest_priority_assignment() -> None:
    # E=2, k=1, cf=1, N=4: C = ceil(1*1*4/2) = 2. Tokens 0,1,2 pick expert 0 (p = σ(2), σ(3), σ(1));
    # token 3 picks expert 1. Expert 0 keeps its two most confident tokens (1 and 0) and drops token 2.
    r = identity_gate(TopKSoftmaxRouter(2, 2, k=1, capacity_factor=1.0))
    x = torch.tensor([[2.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert r.capacity(4) == 2
    out = r(x)
    assert out.requested.tolist() == [[True, False], [True, False], [True, False], [False, True]]
    assert out.dispatch.tolist() == [[True, False], [True, False], [False, False], [False, True]]
    assert out.combine[2].abs().sum() == 0
    assert float(out.combine[1, 0].detach()) == pytest.approx(1 / (1 + math.exp(-3)))
    # acting (eval mode) and targets (no_grad) never drop
    r.eval()
    assert r(x).dispatch.sum() == 4
    r.train()
    with torch.no_grad():
        assert r(x).dispatch.sum() == 4


def test_topk_capacity_serves_first_choices_before_second_choices() -> None:
    # k=2 of E=2, N=2, cf=0.5: C = ceil(0.5*2*2/2) = 1. Each expert keeps the token that chose it first.
    r = identity_gate(TopKSoftmaxRouter(2, 2, k=2, capacity_factor=0.5))
    out = r(torch.tensor([[1.0, 0.0], [0.0, 5.0]]))
    assert out.dispatch.tolist() == [[True, False], [False, True]]


def test_switch_balance_loss_is_one_when_uniform_and_e_when_collapsed() -> None:
    n, e = 8, 4
    uniform = torch.full((n, e), 1 / e)
    assigned = torch.eye(e).repeat(2, 1).bool()
    assert float(switch_balance_loss(assigned, uniform)) == pytest.approx(1.0)
    collapsed = torch.zeros(n, e)
    collapsed[:, 0] = 1.0
    assert float(switch_balance_loss(collapsed.bool(), collapsed)) == pytest.approx(e)
    r = TopKSoftmaxRouter(3, 4, k=2, balance_alpha=0.5, z_beta=0.0)
    out = r(torch.randn(16, 3))
    assert float(out.aux_loss) == pytest.approx(0.5 * float(switch_balance_loss(out.requested, out.probs)))


def test_topk_renormalize_sums_to_one_over_the_selected_set() -> None:
    r = identity_gate(TopKSoftmaxRouter(4, 4, k=2, renormalize=True))
    out = r(torch.tensor([[3.0, 2.0, 0.0, -1.0]]))
    assert out.dispatch.tolist() == [[True, True, False, False]]
    assert float(out.combine.sum()) == pytest.approx(1.0)
    assert float(out.combine[0, 0]) == pytest.approx(1 / (1 + math.exp(-1)))


def test_expert_prototyping_takes_top1_per_group_with_the_groups_softmax() -> None:
    r = identity_gate(ExpertPrototypingRouter(4, 4, k=2))
    out = r(torch.tensor([[1.0, 0.0, 0.0, 2.0]]))  # groups {0,1} and {2,3}
    assert out.dispatch.tolist() == [[True, False, False, True]]
    assert float(out.combine[0, 0]) == pytest.approx(math.exp(1) / (math.exp(1) + 1))
    assert float(out.combine[0, 3]) == pytest.approx(math.exp(2) / (math.exp(2) + 1))
    with pytest.raises(UserError, match="divide E"):
        ExpertPrototypingRouter(4, 6, k=4)


def test_expert_choice_loads_are_exactly_n_c_over_e_and_acting_uses_thresholds() -> None:
    # N=4, E=2, c=1: each expert takes k = 4*1/2 = 2 tokens, the two with the largest S[:, e].
    r = identity_gate(ExpertChoiceRouter(2, 2, capacity_factor=1.0, threshold_momentum=0.0))
    x = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 3.0]])
    assert r.tokens_per_expert(4) == 2
    out = r(x)
    assert out.dispatch.sum(0).tolist() == [2, 2]
    assert out.dispatch.tolist() == [[True, False], [True, False], [False, True], [False, True]]
    s = torch.softmax(x, -1)
    assert torch.allclose(r.threshold, torch.stack([s[1, 0], s[2, 1]]))  # each expert's 2nd largest score
    assert torch.allclose(out.combine, s * out.dispatch)
    # acting at batch size 1: the threshold rule, the same whatever else is in the batch
    r.eval()
    alone = [r(x[i : i + 1]).dispatch[0].tolist() for i in range(4)]
    assert alone == r(x).dispatch.tolist() == (s >= r.threshold).tolist()


def test_expert_choice_acts_densely_before_its_first_training_batch() -> None:
    r = ExpertChoiceRouter(3, 4).eval()
    assert r(torch.randn(1, 3)).dispatch.all()


def test_normalized_sigmoid_weights_sum_to_one_over_the_selected_set() -> None:
    r = identity_gate(NormalizedSigmoidRouter(4, 4, k=2, bias_gamma=0.0))
    x = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 1.0]])
    out = r(x)
    s = torch.sigmoid(x)
    assert out.dispatch.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.allclose(out.combine.sum(-1), torch.ones(2))
    assert float(out.combine[0, 0]) == pytest.approx(float(s[0, 0] / (s[0, 0] + s[0, 1])))
    # the balance bias changes the selection only, never the weights
    r.balance_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    out = r(x)
    assert out.dispatch[0].tolist() == [True, False, False, True]
    assert float(out.combine[0, 3]) == pytest.approx(float(s[0, 3] / (s[0, 0] + s[0, 3])))
    assert float(out.combine[0].sum()) == pytest.approx(1.0)


def test_normalized_sigmoid_bias_moves_toward_underloaded_experts() -> None:
    r = identity_gate(NormalizedSigmoidRouter(3, 3, k=1, bias_gamma=0.1))
    r(torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))  # loads 2, 1, 0; mean 1
    assert r.balance_bias.tolist() == pytest.approx([-0.1, 0.0, 0.1])


def test_dense_to_sparse_gate_goes_from_dense_to_sparse_as_temperature_falls() -> None:
    r = identity_gate(DenseToSparseRouter(4, 4, tau_max=1.0, tau_min=0.05, decay_updates=100, theta=1e-3)).eval()
    x = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    active = []
    for t in (0, 25, 50, 75, 100, 200):
        r.set_updates(t)
        active.append(int(r(x).dispatch.sum()))
    assert r.temperature(0) == 1.0 and r.temperature(200) == 0.05
    assert active[0] == 4 and active[-1] == 1  # softmax(h/1) all > 1e-3; softmax(h/0.05): only the max
    assert active == sorted(active, reverse=True)
    # τ = 0.05: p_2/p_1 = e^-20 < θ, so only the top expert passes; its combine weight is softmax(h), not g̃
    out = r(x)
    assert float(out.combine[0, 0]) == pytest.approx(float(torch.softmax(x, -1)[0, 0]))
    assert r.temperature(50) == pytest.approx(1.0 * math.exp(50 * math.log(0.05) / 100))


def test_dense_to_sparse_is_stochastic_only_in_training_forwards() -> None:
    r = DenseToSparseRouter(3, 4, tau_max=0.2, tau_min=0.2, decay_updates=1)
    x = torch.randn(64, 3)
    torch.manual_seed(0)
    a = r(x).dispatch
    b = r(x).dispatch
    assert not torch.equal(a, b)  # Gumbel noise
    r.eval()
    assert torch.equal(r(x).dispatch, r(x).dispatch)


def test_tsallis_entropy_hand_values() -> None:
    q = 2.0  # H_2 = 1 - Σp², max (1 - 1/E)
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    assert tsallis_entropy(p, q).tolist() == pytest.approx([0.5 / 0.75, 1.0, 0.0])


def test_tsallis_switch_fires_above_the_threshold() -> None:
    r = identity_gate(TsallisHybridRouter(4, 4, q=1.1, entropy_threshold=0.9, top_p=0.75, keep_top_k=1))
    near_uniform = torch.tensor([[0.1, 0.0, 0.0, -0.1]])
    peaked = torch.tensor([[4.0, 3.0, 0.0, 0.0]])
    out = r(torch.cat([near_uniform, peaked]))
    h = tsallis_entropy(torch.softmax(torch.cat([near_uniform, peaked]), -1), 1.1)
    assert float(h[0]) > 0.9 > float(h[1])
    assert out.dispatch[0].all()  # soft routing: every expert
    # peaked: p ≈ (0.70, 0.26, 0.02, 0.02); cumulative 0.70 <= 0.75 keeps expert 0 only
    assert out.dispatch[1].tolist() == [True, False, False, False]
    assert out.stats["soft_share"] == 0.5
    keep2 = identity_gate(TsallisHybridRouter(4, 4, keep_top_k=2))
    assert keep2(peaked).dispatch[0].tolist() == [True, True, False, False]


def test_modified_softmax_applies_the_transform_before_the_gate() -> None:
    r = identity_gate(ModifiedSoftmaxRouter(2, 2))
    x = torch.tensor([[3.0, -3.0]])
    assert torch.allclose(r(x).probs, torch.softmax(torch.tanh(x), -1))
    with pytest.raises(UserError, match="transform"):
        TopKSoftmaxRouter(2, 2, transform="relu")


def test_meaningless_settings_are_refused_with_one_line() -> None:
    for name, kwargs in [("topk", {"k": 5}), ("topk", {"capacity_factor": 0.0}), ("expert_choice", {"capacity_factor": -1.0}),
                         ("norm_sigmoid", {"k": 0}), ("dense_to_sparse", {"tau_min": 2.0}), ("tsallis", {"q": 1.0}),
                         ("nope", {}), ("topk", {"unknown": 1})]:
        with pytest.raises(UserError) as e:
            make_router(name, 3, 4, **kwargs)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(ROUTER_CLASSES))
def test_acting_is_deterministic_and_independent_of_the_batch(name: str) -> None:
    torch.manual_seed(0)
    mlp = MoEMLP(6, [8, 8], router=name, n_experts=4, n_shared=1, n_tasks=3)
    x, task = torch.randn(10, 6), torch.eye(3)[torch.arange(10) % 3]
    for _ in range(3):  # a few training forwards first (thresholds, biases, EMA)
        mlp(x, task).sum().backward()
    mlp.eval()
    with torch.no_grad():
        batch = mlp(x, task)
        alone = torch.cat([mlp(x[i : i + 1], task[i : i + 1]) for i in range(10)])
        again = mlp(x, task)
    assert torch.allclose(batch, alone, atol=1e-6)
    assert torch.equal(batch, again)


@pytest.mark.parametrize("name", ["topk", "expert_choice", "dense_to_sparse", "tsallis", "norm_sigmoid", "prototyping"])
def test_grouped_compute_equals_dense_compute(name: str) -> None:
    torch.manual_seed(1)
    dense = MoELayer(5, 7, make_router(name, 5, 4), n_shared=1)
    grouped = MoELayer(5, 7, make_router(name, 5, 4), n_shared=1, compute="grouped")
    grouped.load_state_dict(dense.state_dict())
    dense.eval()
    grouped.eval()
    x = torch.randn(33, 5)
    assert torch.allclose(dense(x), grouped(x), atol=1e-5)


def test_aux_loss_reaches_the_router_through_the_output() -> None:
    torch.manual_seed(0)
    layer = MoELayer(3, 2, TopKSoftmaxRouter(3, 4, k=1, balance_alpha=1.0), activation=None)
    x = torch.randn(16, 3)
    before = AddAuxiliaryLoss.calls
    layer(x).sum().backward()
    assert AddAuxiliaryLoss.calls == before + 1
    with_aux = layer.router.gate.weight.grad.clone()
    # the same gradient by hand: task loss + aux loss, with the identity trick off (no_grad-free path)
    layer.zero_grad()
    out = layer.route(x)
    y = layer.experts(x, out)
    (y.sum() + out.aux_loss).backward()
    assert torch.allclose(with_aux, layer.router.gate.weight.grad, atol=1e-6)


def test_task_attention_needs_task_ids() -> None:
    with pytest.raises(UserError, match="n_tasks"):
        MoEMLP(4, [8], router="task_attention")
    layer = MoELayer(4, 8, make_router("task_attention", 3, 2))
    with pytest.raises(UserError, match="task ids"):
        layer(torch.randn(2, 4))


def test_dense_to_sparse_diversifies_from_one_expert() -> None:
    torch.manual_seed(0)
    layer = MoELayer(3, 4, DenseToSparseRouter(3, 4, diversify_updates=5, mask_rate=0.5))
    x = torch.randn(8, 3)
    out = layer.route(x)
    assert out.dispatch[:, 0].all() and out.dispatch.sum() == 8  # phase 1: expert 0 alone
    w0 = layer.weight.detach()[0].clone()
    layer.router.set_updates(5)
    layer.route(x)  # the first training forward past T_div spawns the copies
    assert int(layer.spawned_at) == 5
    w = layer.weight.detach()
    for e in range(4):
        kept = w[e] != 0
        assert 0 < int(kept.sum()) < kept.numel()
        assert torch.allclose(w[e][kept], 2.0 * w0[kept])  # expert 0's weights, masked, scaled by 1/(1-rate)
    assert not torch.equal(w[1], w[2])  # independent masks break the symmetry


def test_active_parameter_count() -> None:
    mlp = MoEMLP(4, [8], router="topk", n_experts=4, router_kwargs={"k": 1})
    per_expert = 4 * 8 + 8
    assert count_parameters(mlp) - count_parameters(mlp, active_only=True, k_active=1) == 3 * per_expert


def test_soft_moe_weights_are_convex_over_tokens_and_slots() -> None:
    from rewardlab.moe.routers import SoftMoERouter

    r = SoftMoERouter(5, 3, slots_per_expert=2)
    d, c = r.soft_forward(torch.randn(4, 6, 5))
    assert d.shape == c.shape == (4, 6, 6)
    assert torch.allclose(d.sum(1), torch.ones(4, 6)) and torch.allclose(c.sum(2), torch.ones(4, 6))
    out = r(torch.randn(4, 6, 5))
    assert out.combine.shape == (24, 3) and torch.allclose(out.combine.sum(-1), torch.ones(24))


def test_task_expert_mutual_information_by_hand() -> None:
    from rewardlab.moe.diagnostics import routing_stats, task_expert_mutual_information

    task = torch.eye(2).repeat_interleave(2, 0)  # tasks 0, 0, 1, 1
    specialised = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert task_expert_mutual_information(task, specialised) == pytest.approx(math.log(2))
    assert task_expert_mutual_information(task, torch.full((4, 2), 0.5)) == pytest.approx(0.0, abs=1e-9)
    # soft routing counts by weight: 0.9/0.1 per task gives log 2 - H(0.9)
    soft = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert task_expert_mutual_information(task, soft) == pytest.approx(math.log(2) - h)
    out = identity_gate(TopKSoftmaxRouter(2, 2, k=1, capacity_factor=0.5))(torch.tensor([[2.0, 0.0]] * 3 + [[0.0, 2.0]]))
    stats = routing_stats(out, torch.eye(2)[[0, 0, 0, 1]])
    # C = ceil(0.5*1*4/2) = 1: expert 0 keeps one of its three tokens
    assert stats["drop_rate"] == pytest.approx(2 / 4)
    assert stats["load_imbalance"] == pytest.approx(1.0) and stats["dead_experts"] == 0


def test_topk_drop_rate_and_capacity_at_batch_size_one_by_hand() -> None:
    from rewardlab.moe.diagnostics import routing_stats

    # the capacity case above: 4 requested assignments, token 2's dropped -> drop rate 1/4, 0.75 active per token
    r = identity_gate(TopKSoftmaxRouter(2, 2, k=1, capacity_factor=1.0))
    stats = routing_stats(r(torch.tensor([[2.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 1.0]])))
    assert stats["drop_rate"] == 0.25 and stats["active_experts"] == 0.75
    # N=1: ceil(1*1*1/2) = 1 slot (int() would give 0 and drop everything); the lone token keeps its expert
    assert r.capacity(1) == 1
    assert r(torch.tensor([[0.0, 2.0]])).dispatch.tolist() == [[False, True]]


def test_expert_choice_gives_a_token_several_experts_or_none_by_hand() -> None:
    # N=4, E=3, c=0.75: k = ceil(4*0.75/3) = 1 token per expert. S rows (softmax of the identity gate):
    # t0 = (e³, e³, 1)/(2e³+1) ≈ (.488, .488, .024); t1 = (1, 1, e²)/(2+e²) ≈ (.106, .106, .787);
    # t2 = (1/3, 1/3, 1/3); t3 = (e^.5, 1, 1)/(e^.5+2) ≈ (.452, .274, .274).
    # Expert 0 and expert 1 both take t0 (.488 beats .452 and .333); expert 2 takes t1 (.787).
    r = identity_gate(ExpertChoiceRouter(3, 3, capacity_factor=0.75, threshold_momentum=0.0))
    x = torch.tensor([[3.0, 3.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    assert r.tokens_per_expert(4) == 1
    out = r(x)
    assert out.dispatch.tolist() == [[True, True, False], [False, False, True], [False, False, False], [False, False, False]]
    assert out.dispatch.sum(0).tolist() == [1, 1, 1]  # loads balanced by construction
    assert out.stats["zero_expert_tokens"] == 0.5  # t2, t3: residual / shared experts only
    e3 = math.exp(3)
    assert out.combine[0].tolist() == pytest.approx([e3 / (2 * e3 + 1), e3 / (2 * e3 + 1), 0.0])  # S, not renormalised


def test_tsallis_switch_fires_exactly_when_the_entropy_exceeds_the_threshold() -> None:
    x = torch.tensor([[1.0, 0.5, 0.0, -0.5]])
    h = float(tsallis_entropy(torch.softmax(x, -1), 1.1)[0])
    assert 0.0 < h < 1.0
    below = identity_gate(TsallisHybridRouter(4, 4, q=1.1, entropy_threshold=h - 1e-4, top_p=0.75, keep_top_k=1))
    above = identity_gate(TsallisHybridRouter(4, 4, q=1.1, entropy_threshold=h + 1e-4, top_p=0.75, keep_top_k=1))
    assert below(x).dispatch.all() and below(x).stats["soft_share"] == 1.0  # H̃ > threshold: every expert
    # H̃ < threshold: top-p. p ≈ (.455, .276, .167, .102): cumulative .455 <= .75, .731 <= .75, .898 > .75 -> 2 experts
    assert above(x).dispatch.tolist() == [[True, True, False, False]] and above(x).stats["soft_share"] == 0.0


def test_a_router_setting_it_does_not_take_is_one_line_with_a_guess() -> None:
    from rewardlab.errors import UserError
    from rewardlab.moe.routers import make_router

    with pytest.raises(UserError, match=r"router 'topk' takes k, capacity_factor, .*not 'kk' \(did you mean 'k'\?\)"):
        make_router("topk", 4, 4, kk=2)
    with pytest.raises(UserError, match="unknown router 'top_k'; did you mean 'topk'"):
        make_router("top_k", 4, 4)
    assert make_router("expert_choice", 4, 4, capacity_factor=2.0) is not None  # a setting it takes still works
