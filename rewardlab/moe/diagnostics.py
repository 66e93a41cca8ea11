"""Routing diagnostics (research note §3), computed from a router's output on one batch.

All functions take detached tensors and return plain floats. ``E`` experts, ``N`` tokens.

============================  ====================================================================
``utilization``               ``f_e``, share of (token, expert) assignments to expert e
``load_imbalance``            ``max_e f_e / mean_e f_e`` (1 = perfectly balanced, E = collapsed)
``load_cv2``                  ``Var(f)/Mean(f)²`` (Shazeer et al.'s importance loss form)
``utilization_entropy``       ``H(f)/log E`` in [0, 1]
``dead_experts``              ``#{e: f_e < 0.1/E}``
``drop_rate``                 dropped / requested assignments (capacity)
``router_entropy``            mean over tokens of ``H(p)/log E`` (normalised Shannon entropy)
``active_experts``            mean over tokens of ``Σ_e dispatch``
``saturation``                on a fixed probe batch: ``mean_n |T_t(x_n) ∩ T_ref(x_n)| / |T_ref(x_n)|``
``change_rate``               share of probe tokens whose selected set ``T(x)`` changed since the last probe
``task_expert_mi``            ``I(task; expert)`` in nats, from the task × expert combine-weight histogram
============================  ====================================================================

Saturation and change rate follow OLMoE-style usage (Muennighoff et al. 2024) as the DeepSeekMoE analysis
(Nguyen et al. 2025) uses them; the normalisation by ``|T_ref|`` generalises ``/k`` to routers whose
number of active experts varies per token.
"""

from __future__ import annotations

import math

import torch

from rewardlab.moe.routers import RouterOut


def routing_stats(out: RouterOut, task: torch.Tensor | None = None) -> dict[str, float]:
    """Every per-batch metric of the table above (saturation and change rate need a probe: see
    :func:`saturation`, :func:`change_rate`), plus the router's own stats.

    :param out: a router's output on ``N`` tokens
    :param task: ``(N, n_tasks)`` one-hot task ids, or ``None`` (no ``task_expert_mi``)
    """
    n_experts = out.probs.shape[-1]
    assigned = out.dispatch.float()
    counts = assigned.sum(0)
    f = counts / counts.sum().clamp_min(1.0)
    mean_f = f.mean()
    p = out.probs.clamp_min(1e-12)
    log_e = math.log(n_experts) if n_experts > 1 else 1.0
    requested = float(out.requested.sum())
    stats = {
        "load_imbalance": float(f.max() / mean_f) if mean_f > 0 else float("nan"),
        "load_cv2": float(f.var(unbiased=False) / mean_f**2) if mean_f > 0 else float("nan"),
        "utilization_entropy": float(-(f * f.clamp_min(1e-12).log()).sum() / log_e),
        "dead_experts": float((f < 0.1 / n_experts).sum()),
        "drop_rate": float((out.requested & ~out.dispatch).sum()) / requested if requested else 0.0,
        "router_entropy": float((-(p * p.log()).sum(-1) / log_e).mean()),
        "active_experts": float(assigned.sum(-1).mean()),
    }
    for e in range(n_experts):
        stats[f"utilization/{e}"] = float(f[e])
    if task is not None:
        stats["task_expert_mi"] = task_expert_mutual_information(task, out.combine)
    stats.update(out.stats)
    return stats


def task_expert_mutual_information(task: torch.Tensor, weights: torch.Tensor) -> float:
    """``I(task; expert)`` in nats, from the joint ``p(t, e) ∝ Σ_{n: task_n = t} w[n, e] / Σ_e' w[n, e']``:
    each token spreads unit mass over its experts in proportion to its combine weights (so soft routers,
    whose dispatch is all-true, count too; a bool dispatch mask gives equal shares). 0 when routing
    ignores the task; at most ``min(log n_tasks, log E)``.

    :param task: ``(N, n_tasks)`` one-hot (or soft) task encodings
    :param weights: ``(N, E)`` combine weights (or a bool dispatch mask)
    """
    w = weights.float().clamp_min(0.0)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    joint = task.float().t() @ w  # (n_tasks, E)
    total = joint.sum()
    if total <= 0:
        return 0.0
    joint = joint / total
    pt, pe = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pt @ pe)[nz]).log()).sum())


def saturation(current: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean_n |T_t(x_n) ∩ T_ref(x_n)| / |T_ref(x_n)|`` between two dispatch masks of the same probe
    batch: 1 when routing has settled on the reference (final) checkpoint's choices.

    :param current: ``(N, E)`` bool
    :param reference: ``(N, E)`` bool
    """
    overlap = (current & reference).float().sum(-1)
    return float((overlap / reference.float().sum(-1).clamp_min(1.0)).mean())


def change_rate(previous: torch.Tensor, current: torch.Tensor) -> float:
    """Share of probe tokens whose selected expert set changed between two probes.

    :param previous: ``(N, E)`` bool
    :param current: ``(N, E)`` bool
    """
    return float((previous != current).any(-1).float().mean())
