"""Routers for mixture-of-experts layers: one class per seed paper, behind one interface.

Every router maps tokens ``x`` of shape ``(N, d)`` (N = batch size; one token per sample at RL sizes) to a
:class:`RouterOut`: combine weights ``(N, E)``, a boolean dispatch mask ``(N, E)``, an auxiliary loss (a
scalar that must reach the optimiser), the raw logits and probabilities ``(N, E)``, and detached stats.
The MoE layer then computes ``y = Σ_e combine[:, e] · Expert_e(x)`` (plus shared experts).

Rules every router keeps, so that acting is deterministic and independent of the rest of the batch:

- anything stochastic (Gumbel noise) or batch-coupled (capacity, expert choice's per-expert top-k) runs
  only in a *training forward*: ``module.training and torch.is_grad_enabled()``. SB3 acts in eval mode
  and computes targets under ``no_grad``, so acting and targets always take the per-token rule;
- schedules (temperature, expert diversification) read the ``num_updates`` buffer, the number of gradient
  updates, which the trainer sets (:meth:`Router.set_updates`); it is saved with the model.

Routers (module docstrings of each class give the paper and equations):

========================  ===========================================================================
``topk``                  top-k softmax with capacity and the Switch balance loss (Fedus et al. 2022;
                          M6-T, Yang et al. 2021)
``prototyping``           expert prototyping, "k top-1" (M6-T)
``expert_choice``         expert choice (Zhou et al. 2022), threshold rule for acting
``norm_sigmoid``          normalized sigmoid gating with bias balancing (DeepSeekMoE; Nguyen et al. 2025)
``softmax``               dense softmax gate (the standard gate of the convergence theory)
``modified_softmax``      softmax gate on a bounded transform of the input (Nguyen et al., ICML 2024)
``dense_to_sparse``       Gumbel DTS gate with a temperature schedule (EvoMoE, Nie et al. 2021)
``tsallis``               Tsallis-entropy hybrid top-p/soft routing (DynMoLE, Li et al. 2025)
``task_attention``        softmax attention over experts from the task id (CARE, Sodhani et al. 2021)
``soft_moe``              Soft MoE over the tokens of one sample (Puigcerver et al. 2024; Obando-Ceron et al. 2024)
========================  ===========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewardlab.errors import UserError

TRANSFORMS = ("tanh", "sigmoid")


@dataclass
class RouterOut:
    """What a router returns for ``N`` tokens and ``E`` experts.

    :param combine: ``(N, E)`` float weights of each expert's output; zero where not dispatched
    :param dispatch: ``(N, E)`` bool, the (token, expert) pairs actually computed
    :param aux_loss: scalar auxiliary loss (balance, z-loss, entropy); zero tensor when the router has none
    :param logits: ``(N, E)`` router logits ``h``
    :param probs: ``(N, E)`` the router's distribution over experts (softmax, normalized sigmoid, ...)
    :param requested: ``(N, E)`` bool, pairs the rule asked for before capacity dropped any
        (``requested & ~dispatch`` are the drops)
    :param stats: detached router-specific scalars (temperature, soft-mode share, ...)
    """

    combine: torch.Tensor
    dispatch: torch.Tensor
    aux_loss: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    requested: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def training_forward(module: nn.Module) -> bool:
    """Whether this forward trains: train mode and gradients on. Only then may a router be stochastic or
    couple the samples of a batch (SB3 acts in eval mode and computes targets under ``no_grad``)."""
    return module.training and torch.is_grad_enabled()


def switch_balance_loss(assigned: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """The Switch Transformer load-balancing loss ``E · Σ_e f_e · P_e`` (Fedus et al. 2022, eq. 4).

    :param assigned: ``(N, E)`` bool/float, the assignments (token, expert)
    :param probs: ``(N, E)`` router probabilities
    :return: scalar; 1.0 when both the assignments and the probabilities are uniform
    """
    n_experts = probs.shape[-1]
    counts = assigned.float().sum(0)
    f = counts / counts.sum().clamp_min(1.0)  # share of assignments to e
    p_mean = probs.mean(0)  # P_e
    return n_experts * (f * p_mean).sum()


def capacity_keep(requested: torch.Tensor, priority: torch.Tensor, capacity: int) -> torch.Tensor:
    """Keep at most ``capacity`` requested tokens per expert, those of lowest ``priority`` first.

    :param requested: ``(N, E)`` bool
    :param priority: ``(N, E)`` float; smaller is served first (ties: lower token index first)
    :param capacity: slots per expert, >= 1
    :return: ``(N, E)`` bool, a subset of ``requested``
    """
    key = torch.where(requested, priority, torch.full_like(priority, math.inf))
    order = torch.sort(key, dim=0, stable=True).indices  # (N, E): token served j-th by expert e
    position = torch.empty_like(order)
    position.scatter_(0, order, torch.arange(key.shape[0], device=key.device).unsqueeze(1).expand_as(order))
    return requested & (position < capacity)


class Router(nn.Module):
    """Base router: the gate projection ``h = W_r M(x) + b`` and the ``num_updates`` schedule clock.

    :param d_in: token width ``d``
    :param n_experts: number of routed experts ``E`` (>= 1)
    :param transform: ``None`` or a bounded input transform ``M`` applied before the gate (``tanh``,
        ``sigmoid``): the modified softmax gating of Nguyen et al. (ICML 2024), available on every router
    :raises UserError: ``n_experts < 1``, ``d_in < 1`` or an unknown transform
    """

    #: name in :data:`ROUTER_CLASSES`
    name = "base"
    num_updates: torch.Tensor

    def __init__(self, d_in: int, n_experts: int, transform: str | None = None):
        super().__init__()
        if n_experts < 1 or d_in < 1:
            raise UserError(f"a router needs at least one expert and one input feature (got E={n_experts}, d={d_in})")
        if transform is not None and transform not in TRANSFORMS:
            raise UserError(f"unknown router transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
        self.d_in = d_in
        self.n_experts = n_experts
        self.transform = transform
        self.gate = nn.Linear(d_in, n_experts)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def set_updates(self, n: int) -> None:
        """Set the schedule clock to ``n`` gradient updates (the trainer calls this)."""
        self.num_updates.fill_(int(n))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``h = W_r M(x) + b``, ``(N, E)``."""
        if self.transform == "tanh":
            x = torch.tanh(x)
        elif self.transform == "sigmoid":
            x = torch.sigmoid(x)
        return self.gate(x)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:  # pragma: no cover
        raise NotImplementedError


def _true_like(index: torch.Tensor) -> torch.Tensor:
    """``True`` of ``index``'s shape: the value of a boolean ``scatter`` as a tensor (TorchScript's tracer,
    and so the ONNX export, has no scalar-value ``scatter``)."""
    return torch.ones_like(index, dtype=torch.bool)


def _zero(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(())


class SoftmaxRouter(Router):
    """The dense softmax gate ``g(x) = softmax(W_r x + b)``: every expert is active with weight ``g_e``.

    This is the gate of the MoE convergence theory (Mendes & Jiang 2012; Nguyen et al. 2024) and the
    soft-routing baseline. No auxiliary loss.
    """

    name = "softmax"

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        p = torch.softmax(h, dim=-1)
        everything = torch.ones_like(p, dtype=torch.bool)
        return RouterOut(p, everything, _zero(h), h, p, everything)


class ModifiedSoftmaxRouter(SoftmaxRouter):
    """Modified softmax gating (Nguyen et al., ICML 2024, "A general theory for softmax gating
    multinomial logistic mixture of experts"): ``g_i(x) = softmax_i(β_1iᵀ M(x) + β_0i)`` with ``M`` a
    bounded injective transform applied before the gate (default ``tanh``). It removes the interaction
    between gate and expert parameters that slows estimation when some expert slopes vanish.

    :param transform: ``tanh`` (default) or ``sigmoid``
    """

    name = "modified_softmax"

    def __init__(self, d_in: int, n_experts: int, transform: str | None = "tanh"):
        super().__init__(d_in, n_experts, transform=transform or "tanh")


class TopKSoftmaxRouter(Router):
    """Top-k softmax routing with capacity and the Switch balance loss (Shazeer et al. 2017; Fedus et al.
    2022; M6-T, Yang et al. 2021).

    ``p = softmax(h)``, ``T_k(x) = topk(p, k)``, ``combine_e = p_e`` for ``e ∈ T_k`` (renormalised over
    ``T_k`` when ``renormalize``). Aux loss ``α·E·Σ_e f_e·P_e + β·mean(logsumexp(h)²)`` (balance + z-loss).

    Capacity (only in training forwards, never when acting): ``C = max(1, ⌈cf · k · N / E⌉)`` slots per
    expert; assignments beyond ``C`` are dropped (that expert contributes 0 for the token). Slots are
    filled first choices first, then by descending probability (batch-prioritised routing, Riquelme et
    al. 2021) — a deviation from GShard/Switch's fill in token order, so drops do not depend on the
    replay buffer's sample order.

    :param k: experts per token (1 <= k <= E)
    :param capacity_factor: ``cf``; ``None`` for dropless routing (the default at RL sizes)
    :param balance_alpha: ``α`` of the balance loss
    :param z_beta: ``β`` of the router z-loss (ST-MoE)
    :param renormalize: renormalise the combine weights over ``T_k``
    :raises UserError: ``k`` outside ``[1, E]``, a capacity factor <= 0, negative loss weights
    """

    name = "topk"

    def __init__(self, d_in: int, n_experts: int, k: int = 2, capacity_factor: float | None = None,
                 balance_alpha: float = 1e-2, z_beta: float = 0.0, renormalize: bool = False,
                 transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if not 1 <= k <= n_experts:
            raise UserError(f"top-k routing needs 1 <= k <= E (got k={k}, E={n_experts})")
        if capacity_factor is not None and capacity_factor <= 0:
            raise UserError(f"capacity_factor must be > 0, or None for dropless routing (got {capacity_factor})")
        if balance_alpha < 0 or z_beta < 0:
            raise UserError("balance_alpha and z_beta must be >= 0")
        self.k = k
        self.capacity_factor = capacity_factor
        self.balance_alpha = balance_alpha
        self.z_beta = z_beta
        self.renormalize = renormalize

    def capacity(self, n_tokens: int) -> int:
        """Slots per expert for ``n_tokens`` tokens: ``max(1, ⌈cf · k · N / E⌉)``."""
        assert self.capacity_factor is not None
        return max(1, math.ceil(self.capacity_factor * self.k * n_tokens / self.n_experts))

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        p = torch.softmax(h, dim=-1)
        top_p, top_i = p.topk(self.k, dim=-1)
        requested = torch.zeros_like(p, dtype=torch.bool).scatter(1, top_i, _true_like(top_i))
        # rank of each expert in the token's choice (0 = first choice), for capacity priority
        rank = torch.zeros_like(p).scatter(1, top_i, torch.arange(self.k, dtype=p.dtype).expand_as(top_i))
        dispatch = requested
        if self.capacity_factor is not None and training_forward(self):
            dispatch = capacity_keep(requested, rank * 2.0 + (1.0 - p.detach()), self.capacity(x.shape[0]))
        weights = p / (p * requested).sum(-1, keepdim=True) if self.renormalize else p
        combine = weights * dispatch
        aux = self.balance_alpha * switch_balance_loss(requested, p)
        if self.z_beta:
            aux = aux + self.z_beta * torch.logsumexp(h, dim=-1).pow(2).mean()
        return RouterOut(combine, dispatch, aux, h, p, requested)


class ExpertPrototypingRouter(Router):
    """Expert prototyping, "k top-1" (M6-T, Yang et al. 2021, §3): the E experts are split into ``k``
    groups of ``E/k``; a softmax within each group ``p^(j)``, then top-1 per group:
    ``y = Σ_j p^(j)_{i_j}(x) · FFN_{j, i_j}(x)``. Same compute as top-k.

    Capacity (training forwards only) and the balance loss apply per group, as in top-1 routing; the
    loss is averaged over groups so that its scale matches :class:`TopKSoftmaxRouter`'s.

    :param k: number of groups (prototypes); must divide ``E``
    :param capacity_factor: per-group capacity factor, ``None`` for dropless
    :param balance_alpha: ``α`` of the per-group Switch loss
    :raises UserError: ``k`` does not divide ``E``
    """

    name = "prototyping"

    def __init__(self, d_in: int, n_experts: int, k: int = 2, capacity_factor: float | None = None,
                 balance_alpha: float = 1e-2, transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if k < 1 or n_experts % k:
            raise UserError(f"expert prototyping needs k groups that divide E (got k={k}, E={n_experts})")
        if capacity_factor is not None and capacity_factor <= 0:
            raise UserError(f"capacity_factor must be > 0, or None for dropless routing (got {capacity_factor})")
        self.k = k
        self.capacity_factor = capacity_factor
        self.balance_alpha = balance_alpha

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        n, group = x.shape[0], self.n_experts // self.k
        p = torch.softmax(h.view(n, self.k, group), dim=-1)  # (N, k, E/k): softmax within each group
        top = p.argmax(-1, keepdim=True)
        requested = torch.zeros_like(p, dtype=torch.bool).scatter(2, top, _true_like(top))
        dispatch = requested
        if self.capacity_factor is not None and training_forward(self):
            capacity = max(1, math.ceil(self.capacity_factor * n / group))
            kept = [capacity_keep(requested[:, j], 1.0 - p[:, j].detach(), capacity) for j in range(self.k)]
            dispatch = torch.stack(kept, dim=1)
        aux = self.balance_alpha * torch.stack(
            [switch_balance_loss(requested[:, j], p[:, j]) for j in range(self.k)]).mean()
        probs = p.reshape(n, self.n_experts) / self.k  # a distribution over all E experts
        return RouterOut((p * dispatch).reshape(n, -1), dispatch.reshape(n, -1), aux, h, probs,
                         requested.reshape(n, -1))


class ExpertChoiceRouter(Router):
    """Expert-choice routing (Zhou et al., NeurIPS 2022): ``S = softmax(X W_g)`` over experts; each
    expert takes the ``k_ec = ⌈N·c/E⌉`` tokens with the largest ``S[:, e]``;
    ``combine[n, e] = S[n, e]·1[n chosen by e]``, no renormalisation, no aux loss (balanced by
    construction). A token may get zero experts (it then passes only through shared experts / residual).

    **Rule for acting (documented deviation).** Per-expert top-k couples the samples of a batch: at
    batch size 1 every expert would take the lone token. So the batch rule runs only in training
    forwards; each of them updates an EMA of every expert's k-th largest score, ``thr_e``. Acting and
    target forwards (eval mode or ``no_grad``) use the per-token "threshold EC" rule
    ``dispatch[n, e] = S[n, e] >= thr_e``, which is causal and matches the training loads in expectation.
    Before the first training forward (``thr`` unset) acting is dense.

    :param capacity_factor: ``c``, tokens per expert relative to a balanced share (the paper's EC-CF2: 2)
    :param threshold_momentum: EMA momentum of ``thr_e``
    """

    name = "expert_choice"
    threshold: torch.Tensor

    def __init__(self, d_in: int, n_experts: int, capacity_factor: float = 2.0, threshold_momentum: float = 0.99,
                 transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if capacity_factor <= 0:
            raise UserError(f"expert choice needs capacity_factor c > 0 (got {capacity_factor})")
        if not 0.0 <= threshold_momentum < 1.0:
            raise UserError(f"threshold_momentum must be in [0, 1) (got {threshold_momentum})")
        self.capacity_factor = capacity_factor
        self.threshold_momentum = threshold_momentum
        self.register_buffer("threshold", torch.full((n_experts,), -1.0))  # < 0: unset

    def tokens_per_expert(self, n_tokens: int) -> int:
        """``k_ec = min(N, max(1, ⌈N·c/E⌉))``."""
        return min(n_tokens, max(1, math.ceil(n_tokens * self.capacity_factor / self.n_experts)))

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        s = torch.softmax(h, dim=-1)
        if training_forward(self):
            k = self.tokens_per_expert(x.shape[0])
            g, idx = s.t().topk(k, dim=-1)  # (E, k): G, I = TopK(Sᵀ, k)
            dispatch = torch.zeros_like(s, dtype=torch.bool).t().scatter(1, idx, _true_like(idx)).t()
            kth = g[:, -1].detach()
            with torch.no_grad():
                m = self.threshold_momentum
                self.threshold.copy_(torch.where(self.threshold < 0, kth, m * self.threshold + (1 - m) * kth))
        elif bool((self.threshold < 0).any()):
            dispatch = torch.ones_like(s, dtype=torch.bool)
        else:
            dispatch = s >= self.threshold
        return RouterOut(s * dispatch, dispatch, _zero(h), h, s, dispatch,
                         {"zero_expert_tokens": float((~dispatch.any(-1)).float().mean())})


class NormalizedSigmoidRouter(Router):
    """Normalized sigmoid gating with bias balancing (DeepSeekMoE/DeepSeek-V3; analysed by Nguyen et al.
    2025, "On DeepSeekMoE: statistical benefits of shared experts and normalized sigmoid gating").

    ``s_e = σ(w_eᵀx + b_e)``, ``T = TopK(s + b^bal, k)``, ``g_e = s_e / Σ_{e' ∈ T} s_e'`` for ``e ∈ T``:
    the weights sum to one over the selected set. The selection-only bias ``b^bal`` is updated in
    training forwards as ``b^bal_e ← b^bal_e + γ·sign(mean_load − load_e)`` (auxiliary-loss-free
    balancing); an optional tiny Switch-style loss ``α`` on top. Shared experts live in the layer
    (:class:`rewardlab.moe.layers.MoELayer` ``n_shared``).

    :param k: routed experts per token (``k = E`` gives the dense normalized sigmoid gate of the theory)
    :param bias_gamma: ``γ``, the bias update speed (0 turns balancing off)
    :param balance_alpha: ``α`` of the optional balance loss
    """

    name = "norm_sigmoid"
    balance_bias: torch.Tensor

    def __init__(self, d_in: int, n_experts: int, k: int = 2, bias_gamma: float = 1e-3, balance_alpha: float = 0.0,
                 transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if not 1 <= k <= n_experts:
            raise UserError(f"normalized sigmoid routing needs 1 <= k <= E (got k={k}, E={n_experts})")
        if bias_gamma < 0 or balance_alpha < 0:
            raise UserError("bias_gamma and balance_alpha must be >= 0")
        self.k = k
        self.bias_gamma = bias_gamma
        self.balance_alpha = balance_alpha
        self.register_buffer("balance_bias", torch.zeros(n_experts))

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        s = torch.sigmoid(h)
        top = (s.detach() + self.balance_bias).topk(self.k, dim=-1).indices
        dispatch = torch.zeros_like(s, dtype=torch.bool).scatter(1, top, _true_like(top))
        g = s * dispatch / (s * dispatch).sum(-1, keepdim=True)
        if training_forward(self) and self.bias_gamma:
            with torch.no_grad():
                load = dispatch.float().sum(0)
                self.balance_bias.add_(self.bias_gamma * torch.sign(load.mean() - load))
        aux = self.balance_alpha * switch_balance_loss(dispatch, s / s.sum(-1, keepdim=True)) if self.balance_alpha \
            else _zero(h)
        return RouterOut(g, dispatch, aux, h, s / s.sum(-1, keepdim=True), dispatch,
                         {"bias_spread": float(self.balance_bias.max() - self.balance_bias.min())})


class DenseToSparseRouter(Router):
    """The Dense-to-Sparse gate of EvoMoE (Nie et al. 2021, §3.3; official code codecaution/EvoMoE).

    ``g̃ = softmax((h + G)/τ)`` with ``G ~ Gumbel(0, 1)``; experts with ``g̃_e > θ`` are dispatched and
    ``combine = 1[g̃ > θ] ⊙ softmax(h)`` (``⊙ g̃`` with ``use_gumbel_gates``), not renormalised. As the
    temperature ``τ`` falls, fewer experts pass ``θ``: the gate goes from dense to sparse by itself.
    After ``hard_after`` updates it switches to top-1 of ``g̃``. Aux loss (the code's):
    ``α·E·Σ_e me_e·ce_e`` with ``me`` the mean gate weight and ``ce`` the share of tokens selecting e.

    Temperature schedule over gradient updates ``t`` (code): ``exp``:
    ``τ_t = max(τ_max·exp(t·ln(τ_min/τ_max)/T_decay), τ_min)``; ``linear``:
    ``τ_t = max(τ_max − t(τ_max−τ_min)/T_decay, τ_min)``.

    Acting (eval mode or ``no_grad``) adds no noise: ``g̃ = softmax(h/τ_t)``.
    The expert-diversification phase (one expert for ``diversify_updates`` updates, then E masked copies)
    is the layer's job (:meth:`rewardlab.moe.layers.MoELayer.diversify`); this router exposes the setting.

    :param tau_max: initial temperature ``τ_max`` (code default 1.0)
    :param tau_min: final temperature ``τ_min`` (code default 0.5)
    :param decay_updates: ``T_decay``, updates from ``τ_max`` to ``τ_min``
    :param schedule: ``exp`` or ``linear``
    :param theta: the keep threshold ``θ`` (code: 0.001)
    :param hard_after: switch to hard top-1 after this many updates (None: never)
    :param use_gumbel_gates: combine with ``g̃`` instead of ``softmax(h)``
    :param balance_alpha: ``α`` of the aux loss
    :param diversify_updates: EvoMoE phase 1 length, in updates (0: start with E independent experts)
    :param mask_rate: share of each copy's weights zeroed at the spawn (EvoMoE's random masks)
    """

    name = "dense_to_sparse"

    def __init__(self, d_in: int, n_experts: int, tau_max: float = 1.0, tau_min: float = 0.5,
                 decay_updates: int = 10_000, schedule: str = "exp", theta: float = 1e-3, hard_after: int | None = None,
                 use_gumbel_gates: bool = False, balance_alpha: float = 1e-2, diversify_updates: int = 0,
                 mask_rate: float = 0.5, transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if not 0 < tau_min <= tau_max:
            raise UserError(f"the DTS gate needs 0 < tau_min <= tau_max (got {tau_min}, {tau_max})")
        if schedule not in ("exp", "linear"):
            raise UserError(f"unknown temperature schedule {schedule!r}; expected exp or linear")
        if decay_updates < 1 or not 0 <= theta < 1 or not 0 <= mask_rate < 1 or diversify_updates < 0:
            raise UserError("the DTS gate needs decay_updates >= 1, theta and mask_rate in [0, 1), diversify_updates >= 0")
        self.tau_max, self.tau_min = tau_max, tau_min
        self.decay_updates = decay_updates
        self.schedule = schedule
        self.theta = theta
        self.hard_after = hard_after
        self.use_gumbel_gates = use_gumbel_gates
        self.balance_alpha = balance_alpha
        self.diversify_updates = diversify_updates
        self.mask_rate = mask_rate

    def temperature(self, t: int | None = None) -> float:
        """``τ_t`` after ``t`` updates (default: ``num_updates``)."""
        t = int(self.num_updates) if t is None else t
        if self.schedule == "exp":
            tau = self.tau_max * math.exp(t * math.log(self.tau_min / self.tau_max) / self.decay_updates)
        else:
            tau = self.tau_max - t * (self.tau_max - self.tau_min) / self.decay_updates
        return max(tau, self.tau_min)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        p = torch.softmax(h, dim=-1)
        tau = self.temperature()
        noisy = h
        if training_forward(self):
            noisy = h - torch.log(-torch.log(torch.rand_like(h).clamp(1e-10, 1.0 - 1e-7)))  # + Gumbel(0, 1)
        g_tilde = torch.softmax(noisy / tau, dim=-1)
        if self.hard_after is not None and int(self.num_updates) >= self.hard_after:
            top1 = g_tilde.argmax(-1, keepdim=True)
            dispatch = torch.zeros_like(p, dtype=torch.bool).scatter(1, top1, _true_like(top1))
        else:
            dispatch = g_tilde > self.theta
        combine = (g_tilde if self.use_gumbel_gates else p) * dispatch
        me, ce = p.mean(0), dispatch.float().mean(0)
        aux = self.balance_alpha * self.n_experts * (me * ce).sum()
        return RouterOut(combine, dispatch, aux, h, p, dispatch, {"temperature": tau})


def tsallis_entropy(p: torch.Tensor, q: float) -> torch.Tensor:
    """Normalised Tsallis entropy ``H̃_q(p) = [(1 − Σ_e p_e^q)/(q − 1)] / [(1 − E^{1−q})/(q − 1)]``, in [0, 1].

    :param p: ``(N, E)`` distributions, ``E >= 2``
    :param q: entropy index, ``q != 1``
    :return: ``(N,)``
    """
    n_experts = p.shape[-1]
    return (1.0 - p.clamp_min(0).pow(q).sum(-1)) / (1.0 - n_experts ** (1.0 - q))


class TsallisHybridRouter(Router):
    """Tsallis-entropy hybrid routing (DynMoLE, Li et al. 2025; MoE-PEFT ``dynmole`` adapter).

    ``p = softmax(h)``. Per token: if ``H̃_q(p) > entropy_threshold`` every expert is active (soft
    routing); otherwise top-p: experts in descending order while the cumulative mass is ``<= top_p``,
    and always at least the top ``keep_top_k``. ``combine = p ⊙ mask``, not renormalised.
    Loss ``λ_dyn·mean_n H̃_q(p_n) + λ_aux·E·Σ_e mean_n(combine_{n,e})·mean_n(p_{n,e})``.

    :param q: entropy index (code default 1.1)
    :param entropy_threshold: the soft-routing switch (0.9)
    :param top_p: mass kept by top-p routing (0.75)
    :param keep_top_k: experts always kept (2)
    :param lambda_dyn: weight of the entropy loss (0.01)
    :param lambda_aux: weight of the balance loss (0.001)
    :raises UserError: E < 2, q == 1, thresholds outside (0, 1], keep_top_k outside [1, E]
    """

    name = "tsallis"

    def __init__(self, d_in: int, n_experts: int, q: float = 1.1, entropy_threshold: float = 0.9, top_p: float = 0.75,
                 keep_top_k: int = 2, lambda_dyn: float = 0.01, lambda_aux: float = 1e-3, transform: str | None = None):
        super().__init__(d_in, n_experts, transform)
        if n_experts < 2 or q == 1.0 or q <= 0:
            raise UserError(f"Tsallis routing needs E >= 2 and q > 0, q != 1 (got E={n_experts}, q={q})")
        if not 0 < entropy_threshold <= 1 or not 0 < top_p <= 1 or not 1 <= keep_top_k <= n_experts:
            raise UserError("Tsallis routing needs entropy_threshold and top_p in (0, 1] and 1 <= keep_top_k <= E")
        self.q = q
        self.entropy_threshold = entropy_threshold
        self.top_p = top_p
        self.keep_top_k = keep_top_k
        self.lambda_dyn = lambda_dyn
        self.lambda_aux = lambda_aux

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        h = self.logits(x)
        p = torch.softmax(h, dim=-1)
        entropy = tsallis_entropy(p, self.q)
        sorted_p, order = p.sort(dim=-1, descending=True)
        keep_sorted = (sorted_p.cumsum(-1) <= self.top_p) | (torch.arange(self.n_experts) < self.keep_top_k)
        top_p_mask = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        soft = entropy > self.entropy_threshold
        dispatch = top_p_mask | soft.unsqueeze(-1)
        combine = p * dispatch
        aux = self.lambda_dyn * entropy.mean() + self.lambda_aux * self.n_experts * (combine.mean(0) * p.mean(0)).sum()
        return RouterOut(combine, dispatch, aux, h, p, dispatch,
                         {"soft_share": float(soft.float().mean()), "tsallis_entropy": float(entropy.detach().mean())})


class TaskAttentionRouter(Router):
    """Task attention over experts (CARE, Sodhani et al. ICML 2021; the MOORE/PaCo family):
    ``w = softmax(MLP(z_task)/T)``, dense and per sample, no balance loss.

    CARE computes the context from a frozen language-model encoding of the task description; here
    ``z_task`` is the task's one-hot id (MetaWorld's ``use_one_hot``), a labelled deviation.

    :param d_in: the task encoding's width (number of tasks for one-hot ids)
    :param hidden: width of the MLP's hidden layer (0: a linear map, MOORE/PaCo style)
    :param temperature: ``T``
    :raises UserError: the forward gets no task encoding
    """

    name = "task_attention"

    def __init__(self, d_in: int, n_experts: int, hidden: int = 64, temperature: float = 1.0):
        super().__init__(d_in, n_experts)
        if temperature <= 0:
            raise UserError(f"task attention needs temperature > 0 (got {temperature})")
        self.temperature_ = temperature
        if hidden:
            self.gate = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_experts))  # type: ignore[assignment]
        self.uses_task = True

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        if task is None:
            raise UserError("the task_attention router needs task ids (set n_tasks: the one-hot task id ends the observation)")
        h = self.gate(task)
        w = torch.softmax(h / self.temperature_, dim=-1)
        everything = torch.ones_like(w, dtype=torch.bool)
        return RouterOut(w, everything, _zero(h), h, w, everything)


class SoftMoERouter(Router):
    """Soft MoE routing (Puigcerver et al. 2024; in RL, Obando-Ceron et al. ICML 2024, dopamine
    ``labs/moes/architectures/softmoe.py``), over the ``m`` tokens *of one sample*.

    For tokens ``X ∈ R^{m×d}`` of one sample and ``Φ ∈ R^{d×(E·p)}``: logits ``XΦ``; dispatch weights
    ``D = softmax over tokens`` (each slot is a convex mix of the sample's tokens), combine weights
    ``C = softmax over slots`` (each token a convex mix of slot outputs). With ``normalize`` (the
    dopamine option), ``X`` and ``Φ`` are L2-normalised and the logits scaled by a learned scalar.
    Slots mix tokens of one sample only, so acting is causal and independent of the batch (the note's
    pitfall 1, option a). No aux loss.

    :meth:`soft_forward` returns ``(D, C)``, each ``(B, m, E·p)``, which
    :class:`rewardlab.moe.layers.SoftMoELayer` uses; :meth:`forward` reports the same routing in the common
    :class:`RouterOut` form for diagnostics, per token ``n``: ``combine[n, e] = Σ_{slots of e} C[n, slot]``.

    :param d_in: token width ``d``
    :param slots_per_expert: ``p``
    :param normalize: L2-normalise tokens and ``Φ``, learned scale
    """

    name = "soft_moe"

    def __init__(self, d_in: int, n_experts: int, slots_per_expert: int = 1, normalize: bool = True):
        super().__init__(d_in, n_experts)
        if slots_per_expert < 1:
            raise UserError(f"soft MoE needs slots_per_expert >= 1 (got {slots_per_expert})")
        self.slots_per_expert = slots_per_expert
        self.normalize = normalize
        self.phi = nn.Parameter(torch.randn(d_in, n_experts * slots_per_expert) / math.sqrt(d_in))
        self.scale = nn.Parameter(torch.ones(()))
        del self.gate  # Φ replaces the per-token gate

    def soft_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: ``(B, m, d)`` tokens
        :return: ``(D, C)``, each ``(B, m, E·p)``: D sums to one over tokens, C over slots
        """
        phi: torch.Tensor = self.phi
        if self.normalize:
            x = F.normalize(x, dim=-1)
            phi = self.scale * F.normalize(phi, dim=0)
        logits = x @ phi
        return torch.softmax(logits, dim=1), torch.softmax(logits, dim=2)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        """Per-token expert weights of ``x`` ``(B, m, d)``, flattened to ``(B·m, E)`` (diagnostics)."""
        _, c = self.soft_forward(x)
        per_expert = c.view(*c.shape[:2], self.n_experts, self.slots_per_expert).sum(-1).flatten(0, 1)
        everything = torch.ones_like(per_expert, dtype=torch.bool)
        return RouterOut(per_expert, everything, per_expert.new_zeros(()), per_expert.log(), per_expert, everything)


ROUTER_CLASSES: dict[str, type[Router]] = {
    cls.name: cls for cls in (TopKSoftmaxRouter, ExpertPrototypingRouter, ExpertChoiceRouter, NormalizedSigmoidRouter,
                              SoftmaxRouter, ModifiedSoftmaxRouter, DenseToSparseRouter, TsallisHybridRouter,
                              TaskAttentionRouter, SoftMoERouter)
}


def make_router(name: str, d_in: int, n_experts: int, **kwargs: object) -> Router:
    """A router by name (:data:`ROUTER_CLASSES`), with its keyword settings.

    :raises UserError: unknown name (with the known ones) or a setting the router does not take
    """
    import inspect

    from rewardlab.errors import closest

    if name not in ROUTER_CLASSES:
        near = closest(name, list(ROUTER_CLASSES))
        hint = f"did you mean {near!r}? " if near else ""
        raise UserError(f"unknown router {name!r}; {hint}known: {', '.join(ROUTER_CLASSES)}")
    cls = ROUTER_CLASSES[name]
    takes = [p for p in list(inspect.signature(cls).parameters)[2:]]  # after d_in and n_experts
    for key in kwargs:
        if key not in takes:
            near = closest(key, takes)
            hint = f" (did you mean {near!r}?)" if near else ""
            raise UserError(f"router {name!r} takes {', '.join(takes) or 'no settings'}, not {key!r}{hint}")
    try:
        return cls(d_in, n_experts, **kwargs)  # type: ignore[arg-type]
    except TypeError as e:
        raise UserError(f"router {name!r}: {e}") from None
