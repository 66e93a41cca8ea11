"""Mixture-of-experts layers: routed experts stacked as one weight tensor, plus shared experts.

``MoELayer`` computes ``y = act(Σ_{i<N_s} Shared_i(x) + Σ_e combine[:, e] · Expert_e(x))`` for tokens
``x`` ``(N, d_in)``, with each expert an affine map ``d_in -> d_out`` and the activation applied after the
mix (a stack of these layers is :class:`MoEMLP`). Two ways to compute the routed experts, same result:

- ``dense`` (default): every expert on every token, one ``einsum`` over the stacked weights
  ``(E, d_in, d_out)``, then masked by ``combine``. Nothing is dropped and nothing depends on how the
  batch is grouped. At RL sizes (E <= 16, N <= 1280, width <= 1024) this wastes FLOPs but not time;
  ``make bench`` measures it against ``grouped``.
- ``grouped``: only dispatched (token, expert) pairs, gathered per expert into a padded
  ``(E, C_max, d_in)`` block and run as one batched matmul (``torch.bmm``: the grouped-GEMM form
  available on CPU torch).

The router's aux loss is attached to the output with :class:`AddAuxiliaryLoss` (DeepSeek-MoE's trick):
the forward returns ``y`` unchanged and the backward gives the aux loss a gradient of 1, so any loss
computed from ``y`` (PPO's, SAC's actor and critic losses) carries the aux loss to the optimiser with no
change to the algorithm. It is attached only in training forwards (train mode, gradients on).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from rewardlab.errors import UserError
from rewardlab.moe.routers import (
    DenseToSparseRouter,
    Router,
    RouterOut,
    SoftMoERouter,
    make_router,
    training_forward,
)

COMPUTE_MODES = ("dense", "grouped")


class AddAuxiliaryLoss(torch.autograd.Function):
    """Identity on ``y`` whose backward also sends gradient 1 into ``aux_loss`` (DeepSeek-MoE's
    ``AddAuxiliaryLoss``): the aux loss joins whatever loss is later computed from ``y``.

    It fires once per backward pass through the forward that made it; ``calls`` counts those backward
    passes (tests check that PPO's and SAC's updates reach it).
    """

    calls = 0

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, aux_loss: torch.Tensor) -> torch.Tensor:
        ctx.dtype = aux_loss.dtype
        ctx.requires_aux_grad = aux_loss.requires_grad
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        AddAuxiliaryLoss.calls += 1
        grad_aux = torch.ones((), dtype=ctx.dtype, device=grad_y.device) if ctx.requires_aux_grad else None
        return grad_y, grad_aux


class MoELayer(nn.Module):
    """One mixture-of-experts layer: a router, ``E`` routed affine experts and ``N_s`` shared ones.

    :param d_in: input width
    :param d_out: output width of every expert
    :param router: a :class:`~rewardlab.moe.routers.Router` over ``E`` experts, reading ``d_in`` features
        (or the task encoding, for ``task_attention``)
    :param n_shared: always-active shared experts (DeepSeekMoE's ``N_s``), summed unweighted
    :param activation: applied to the mixed output (``None``: linear output)
    :param compute: ``dense`` or ``grouped`` (see the module docstring)
    :raises UserError: an unknown compute mode, a negative ``n_shared``
    """

    spawned_at: torch.Tensor

    def __init__(self, d_in: int, d_out: int, router: Router, n_shared: int = 0,
                 activation: type[nn.Module] | None = nn.ReLU, compute: str = "dense"):
        super().__init__()
        if compute not in COMPUTE_MODES:
            raise UserError(f"unknown MoE compute mode {compute!r}; expected one of {', '.join(COMPUTE_MODES)}")
        if n_shared < 0:
            raise UserError(f"n_shared must be >= 0 (got {n_shared})")
        self.router = router
        self.n_experts = router.n_experts
        self.d_in, self.d_out = d_in, d_out
        self.compute = compute
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init, per expert
        self.weight = nn.Parameter(torch.empty(self.n_experts, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.n_experts, d_out).uniform_(-bound, bound))
        self.shared = nn.ModuleList(nn.Linear(d_in, d_out) for _ in range(n_shared))
        self.activation = activation() if activation is not None else nn.Identity()
        # the latest routing of a training forward and of an acting/probe forward, detached, for diagnostics
        self.last: RouterOut | None = None
        self.last_task: torch.Tensor | None = None
        self.last_eval: RouterOut | None = None
        # EvoMoE: the update at which the E experts were spawned from expert 0 (-1: not yet / not used)
        self.register_buffer("spawned_at", torch.full((), -1, dtype=torch.long))

    @property
    def diversifying(self) -> bool:
        """EvoMoE phase 1: one dense expert until ``diversify_updates`` (then :meth:`diversify`)."""
        r = self.router
        return isinstance(r, DenseToSparseRouter) and r.diversify_updates > 0 and int(self.spawned_at) < 0

    @torch.no_grad()
    def diversify(self, generator: torch.Generator | None = None) -> None:
        """EvoMoE's expert diversification: every expert becomes a copy of expert 0 with an independent
        random mask (rate ``router.mask_rate``) on its weights. The trainer must reset the optimiser
        state of ``weight``/``bias`` afterwards (:class:`rewardlab.moe.sb3.MoECallback` does).
        """
        rate = getattr(self.router, "mask_rate", 0.5)
        keep = (torch.rand(self.weight.shape, generator=generator) >= rate).to(self.weight.dtype)
        self.weight.copy_(self.weight[0:1].expand_as(self.weight) * keep / (1.0 - rate))
        self.bias.copy_(self.bias[0:1].expand_as(self.bias))
        self.spawned_at.fill_(int(self.router.num_updates))

    def route(self, x: torch.Tensor, task: torch.Tensor | None = None) -> RouterOut:
        out = self.router(x, task if getattr(self.router, "uses_task", False) else None)
        if self.diversifying:  # phase 1: expert 0 alone, weight 1
            assert isinstance(self.router, DenseToSparseRouter)
            if training_forward(self) and int(self.router.num_updates) >= self.router.diversify_updates:
                self.diversify()
            else:
                one = torch.zeros_like(out.combine)
                one[:, 0] = 1.0
                mask = one.bool()
                out = RouterOut(one, mask, out.aux_loss * 0.0, out.logits, out.probs, mask, out.stats)
        return out

    def experts(self, x: torch.Tensor, out: RouterOut) -> torch.Tensor:
        """``Σ_e combine[:, e] · (x W_e + b_e)``, ``(N, d_out)``."""
        if self.compute == "dense":
            # one (N, d_in) x (d_in, E·d_out) GEMM: ~25% faster here than einsum's batched matmul (measured)
            flat = self.weight.permute(1, 0, 2).reshape(self.d_in, -1)
            every = (x @ flat).view(x.shape[0], self.n_experts, self.d_out) + self.bias  # (N, E, d_out)
            return (every * out.combine.unsqueeze(-1)).sum(1)
        token, expert = out.dispatch.nonzero(as_tuple=True)  # pairs sorted by token
        if token.numel() == 0:
            return x.new_zeros(x.shape[0], self.d_out)
        order = torch.argsort(expert, stable=True)
        token, expert = token[order], expert[order]
        counts = torch.bincount(expert, minlength=self.n_experts)
        width = int(counts.max())
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(token.numel()) - start[expert]
        block = x.new_zeros(self.n_experts, width, self.d_in)
        block[expert, slot] = x[token]
        y = torch.bmm(block, self.weight) + self.bias.unsqueeze(1)  # (E, C_max, d_out)
        weighted = y[expert, slot] * out.combine[token, expert].unsqueeze(-1)
        return x.new_zeros(x.shape[0], self.d_out).index_add_(0, token, weighted)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """:param x: ``(N, d_in)`` tokens
        :param task: ``(N, n_tasks)`` task encoding (routers that read the task)
        :return: ``(N, d_out)``
        """
        out = self.route(x, task)
        y = self.experts(x, out)
        for shared in self.shared:
            y = y + shared(x)
        y = self.activation(y)
        seen = RouterOut(out.combine.detach(), out.dispatch, out.aux_loss.detach(), out.logits.detach(),
                         out.probs.detach(), out.requested, out.stats)
        if not training_forward(self):
            self.last_eval = seen
            return y
        self.last, self.last_task = seen, (task.detach() if task is not None else None)
        if out.aux_loss.requires_grad:
            y = AddAuxiliaryLoss.apply(y, out.aux_loss)
        return y


class SoftMoELayer(nn.Module):
    """A Soft MoE layer on a flat input (Obando-Ceron et al. 2024's "tokenize, then Soft MoE").

    ``x (N, d_in)`` is tokenised by a learned linear map into ``m`` tokens of width ``d_tok``; slots
    ``X̃ = Dᵀ X`` (``E·p`` per sample); expert ``e`` (affine + activation, stacked weights) maps its ``p``
    slots; tokens ``Y = C Ỹ``; the tokens are flattened and projected to ``d_out``. Everything mixes within
    one sample, so acting is deterministic and independent of the batch. Deviation: the dopamine
    version tokenises convolutional feature maps (one token per position); a flat RL observation has no
    positions, hence the learned tokeniser.

    :param d_in: input width
    :param d_out: output width
    :param router: a :class:`~rewardlab.moe.routers.SoftMoERouter` over ``d_tok``-wide tokens
    :param tokens: ``m``, tokens per sample
    :param activation: after the experts and after the output projection
    """

    def __init__(self, d_in: int, d_out: int, router: SoftMoERouter, tokens: int = 4,
                 activation: type[nn.Module] | None = nn.ReLU):
        super().__init__()
        if tokens < 1:
            raise UserError(f"soft MoE needs at least one token per sample (got {tokens})")
        self.router = router
        self.n_experts, self.tokens, self.d_tok = router.n_experts, tokens, router.d_in
        self.tokenizer = nn.Linear(d_in, tokens * self.d_tok)
        bound = 1.0 / math.sqrt(self.d_tok)
        self.weight = nn.Parameter(torch.empty(self.n_experts, self.d_tok, self.d_tok).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.n_experts, self.d_tok).uniform_(-bound, bound))
        self.project = nn.Linear(tokens * self.d_tok, d_out)
        self.activation = activation() if activation is not None else nn.Identity()
        self.last: RouterOut | None = None
        self.last_task: torch.Tensor | None = None
        self.last_eval: RouterOut | None = None

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        tokens = self.tokenizer(x).view(n, self.tokens, self.d_tok)  # X (N, m, d_tok)
        d, c = self.router.soft_forward(tokens)  # (N, m, E·p) each
        slots = d.transpose(1, 2) @ tokens  # X̃ = Dᵀ X, (N, E·p, d_tok)
        p = self.router.slots_per_expert
        slots = slots.view(n, self.n_experts, p, self.d_tok)
        out = self.activation(torch.einsum("nepd,edo->nepo", slots, self.weight) + self.bias[:, None, :])
        y = c @ out.reshape(n, self.n_experts * p, self.d_tok)  # Y = C Ỹ, (N, m, d_tok)
        with torch.no_grad():
            seen = self.router(tokens)
        if training_forward(self):
            self.last = seen
            self.last_task = None if task is None else task.detach().repeat_interleave(self.tokens, 0)
        else:
            self.last_eval = seen
        return self.activation(self.project(y.flatten(1)))


class MoEMLP(nn.Module):
    """A stack of :class:`MoELayer` s (an MLP whose every layer is a mixture of experts).

    :param d_in: input width
    :param widths: output width of each layer, e.g. ``[256, 256]``
    :param router: router name (:data:`rewardlab.moe.routers.ROUTER_CLASSES`)
    :param n_experts: routed experts per layer
    :param n_shared: shared experts per layer
    :param router_kwargs: the router's settings
    :param n_tasks: width of the task encoding routers may read (``task_attention`` needs it)
    :param compute: ``dense`` or ``grouped``
    :param activation: after every layer
    """

    def __init__(self, d_in: int, widths: list[int], router: str = "topk", n_experts: int = 4, n_shared: int = 0,
                 router_kwargs: dict[str, Any] | None = None, n_tasks: int = 0, compute: str = "dense",
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise UserError(f"an MoE MLP needs at least one layer of positive width (got {widths})")
        if router == "task_attention" and n_tasks < 1:
            raise UserError("the task_attention router needs n_tasks >= 1 (the one-hot task id at the end of the obs)")
        layers: list[nn.Module] = []
        for w_in, w_out in zip([d_in, *widths[:-1]], widths):
            if router == "soft_moe":  # tokens of width w_out / tokens, mixed within each sample
                kwargs = dict(router_kwargs or {})
                tokens = int(kwargs.pop("tokens", 4))
                d_tok = int(kwargs.pop("token_width", max(w_out // tokens, 1)))
                soft = make_router(router, d_tok, n_experts, **kwargs)
                assert isinstance(soft, SoftMoERouter)
                layers.append(SoftMoELayer(w_in, w_out, soft, tokens=tokens, activation=activation))
                continue
            r = make_router(router, n_tasks if router == "task_attention" else w_in, n_experts, **(router_kwargs or {}))
            layers.append(MoELayer(w_in, w_out, r, n_shared=n_shared, activation=activation, compute=compute))
        self.layers = nn.ModuleList(layers)
        self.d_out = widths[-1]

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, task)
        return x


def moe_layers(module: nn.Module) -> list[tuple[str, MoELayer | SoftMoELayer]]:
    """Every :class:`MoELayer` and :class:`SoftMoELayer` inside ``module``, with its qualified name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, (MoELayer, SoftMoELayer))]


def count_parameters(module: nn.Module, active_only: bool = False, k_active: int | None = None) -> int:
    """Parameters of ``module``; with ``active_only``, routed experts count ``k_active`` of ``E`` (the
    parameters one token uses), for matching a dense MLP's active parameters.

    :param k_active: experts active per token (default: all)
    """
    total = sum(p.numel() for p in module.parameters())
    if not active_only:
        return total
    for _, layer in moe_layers(module):
        per_expert = layer.weight[0].numel() + layer.bias[0].numel()
        k = layer.n_experts if k_active is None else k_active
        total -= per_expert * (layer.n_experts - k)
    return total
