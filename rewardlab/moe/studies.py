"""Synthetic convergence studies of mixture-of-experts estimation (CPU, minutes), one per seed paper.

Each study fits maximum-likelihood MoE models to samples of size ``n`` drawn from a known truth, for
several seeds, and measures an error against the truth. Slopes of ``log error`` on ``log n`` are fitted
per seed by least squares; tables give the mean and a 95% t-interval over seeds. Every claim the report
states carries an explicit, computed verdict, by one standard for all studies (:data:`VERDICT_STANDARD`,
:func:`ci_verdict`): confirmed only when the intervals support the claim, inconclusive when they overlap,
not confirmed when they contradict it. A finished run's report and plots are rewritten from its
``results.json`` without refitting by :func:`write_study_report` (``python -c "from rewardlab.moe.studies
import write_study_report as w; w('experiments/results/<name>')"``), as the committed reports were.

``mendes_jiang``
    Mendes & Jiang (JMLR 2012), "On convergence rates of mixtures of polynomial experts": ``m``
    softmax-gated experts, each a polynomial of order ``k`` in ``s = 1`` covariate with Gaussian noise.
    Their KL rate ``m^{-2[α∧(k+1)]/s} + (m·J_k + v_m)·log n / n`` trades approximation (falls with
    ``m`` and ``k``) against estimation (grows with the parameter count ``m(k+1) + 2(m−1)``). Error: the KL
    divergence from the true conditional density, ``∫(f̂ − f)²/(2σ²)`` on a grid (exact for a shared
    known variance).
``deepseek``
    Nguyen et al. (2025), "On DeepSeekMoE: statistical benefits of shared experts and normalized sigmoid
    gating": data from a shared expert plus two routed experts (experts ``tanh(aᵀx + b)``, ``x ∈ [-1, 1]²``),
    gated either by a normalized sigmoid or by a softmax (two truths). Four fitted models, each with
    three routed experts (over-specified by one): {normalized sigmoid, softmax} × {with, without a
    shared expert}. The gates are dense (every routed expert weighted; the normalized sigmoid of the
    theory with k = E), so the comparison is about the gate's form, not top-k selection. Errors: the
    regression function's L2 error, and the routed experts' parameter error (mean over true experts of
    the distance to the nearest fitted expert).
``modified_softmax``
    Nguyen et al. (ICML 2024), softmax gating multinomial logistic MoE: ``K = 3`` classes, two true
    experts, one with vanishing slopes (``a_ℓ = 0``); fitted with three experts by standard gating
    ``softmax(β₁x + β₀)`` and by modified gating ``softmax(β₁ tanh(x) + β₀)`` (each on data from its own
    gate, so both are well specified), plus a control with no vanishing slope. Error: the Voronoi loss of
    the expert parameters ``Σ_j |Σ_{i∈V_j} π_i − π*_j| + Σ_j Σ_{i∈V_j} π_i ‖θ_i − θ*_j‖``.

Deviations: maximum likelihood is approximated by L-BFGS from a few seeded starts (the best training
likelihood kept), not a global optimum; in the two parameter-estimation studies the starts lie near the
truth (true parameters, the redundant expert a copy of expert 1, plus N(0, 0.5²) noise: ``init_noise``),
as simulation studies of these rates do, so that the error measured is statistical, not a bad local
optimum (random starts at n = 16000 gave parameter errors of several units at the truth's likelihood);
the Voronoi losses use the unweighted parameter distance (the papers' losses weight each parameter block
by its own exponent); the logistic study bounds every parameter to [-10, 10] (the theory's compact
parameter space), else redundant experts' MLE diverges.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from rewardlab.errors import UserError
from rewardlab.types import Seed

torch_dtype = torch.float64
M = TypeVar("M", bound=nn.Module)


class StudySpec(BaseModel):
    """A convergence study as a YAML spec (``experiments/moe_convergence_*.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="names the output directory")
    study: Literal["mendes_jiang", "deepseek", "modified_softmax"] = Field(description="which study")
    description: str = ""
    seeds: list[Seed] = Field(min_length=2, description="one fit per seed and setting (>= 2 for an interval)")
    sample_sizes: list[int] = Field(min_length=3, description="sample sizes n (>= 3 for a slope)")
    restarts: int = Field(default=2, ge=1, le=20, description="L-BFGS starts per fit; the best likelihood is kept")
    max_iter: int = Field(default=300, ge=10, le=10_000, description="L-BFGS iterations per start")
    noise: float = Field(default=0.3, gt=0, description="Gaussian noise sd (regression studies)")
    experts: list[int] = Field(default=[1, 2, 4, 8], description="mendes_jiang: numbers of experts m")
    orders: list[int] = Field(default=[0, 1, 2], description="mendes_jiang: polynomial orders k")
    init_noise: float | None = Field(default=0.5, ge=0, description="deepseek, modified_softmax: fits start at the true "
                                     "parameters (the redundant expert a copy of expert 1) plus N(0, sd^2) noise; "
                                     "None: random starts")


def load_study(path: str | Path) -> StudySpec:
    """Load and validate a study spec.

    :raises UserError: missing file, invalid YAML or fields, sample sizes < 10
    """
    import yaml

    from rewardlab.config import validate_config

    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"spec {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    spec = validate_config(StudySpec, data, f"spec {path}")
    if min(spec.sample_sizes) < 10 or len(set(spec.sample_sizes)) != len(spec.sample_sizes):
        raise UserError(f"spec {path}: sample_sizes must be distinct and >= 10")
    if min(spec.experts) < 1 or min(spec.orders) < 0:
        raise UserError(f"spec {path}: experts must be >= 1 and orders >= 0")
    return spec


def is_study_file(path: str | Path) -> bool:
    """Whether a YAML file is a study spec (it has a top-level ``study:``), for ``rewardlab run``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "study" in data


# ----------------------------------------------------------------------------------------------- fitting


def fit_lbfgs(make: Callable[[int], M], loss: Callable[[M], torch.Tensor], restarts: int, max_iter: int,
              seed: int) -> M:
    """Minimise ``loss`` with L-BFGS (strong Wolfe line search) from ``restarts`` seeded inits; keep the best.

    :param make: ``start -> model``, seeded by the caller's seed and the start index
    """
    best: tuple[float, M] | None = None
    for start in range(restarts):
        torch.manual_seed(seed * 1000 + start)
        model = make(start)
        opt = torch.optim.LBFGS(model.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)
        opt.step(partial(_closure, opt, model, loss))
        with torch.no_grad():
            value = float(loss(model))
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, model)
    assert best is not None, "every start diverged"
    return best[1]


def _closure(opt: torch.optim.Optimizer, model: M, loss: Callable[[M], torch.Tensor]) -> torch.Tensor:
    opt.zero_grad()
    value = loss(model)
    value.backward()
    return value


def _new(cls: Callable[..., M], *args: Any) -> M:
    """``cls(*args[:-1])``: a model factory for :func:`fit_lbfgs` (the last argument is the start index)."""
    return cls(*args[:-1])


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def _nll(model: MultinomialLogisticExperts, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model.nll(x, y)


def slope(n: Sequence[int], err: Sequence[float] | np.ndarray) -> float:
    """Least-squares slope of ``log err`` on ``log n``."""
    return float(np.polyfit(np.log(np.asarray(n, float)), np.log(np.maximum(np.asarray(err, float), 1e-300)), 1)[0])


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval over seeds."""
    from scipy import stats

    x = np.asarray(values, float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


# ----------------------------------------------------------------------------- Mendes & Jiang (2012)


def mj_target(x: torch.Tensor) -> torch.Tensor:
    """The true regression function of the Mendes–Jiang study, analytic (α = ∞) on [-1, 1]."""
    return torch.sin(2.0 * math.pi * x) + 0.5 * x


class PolynomialExperts(nn.Module):
    """``m`` softmax-gated polynomial experts of order ``k`` in one covariate (Mendes & Jiang's model,
    Gaussian GLM with identity link). Gate logits ``w_j x + b_j``; initialised as a Voronoi partition of
    [-1, 1] around evenly spaced centres (``w_j = a c_j``, ``b_j = −a c_j²/2``) with seeded jitter."""

    def __init__(self, m: int, k: int):
        super().__init__()
        centres = torch.linspace(-1 + 1 / m, 1 - 1 / m, m, dtype=torch_dtype)
        sharp = 4.0 * m
        self.gate_w = nn.Parameter(sharp * centres + 0.1 * torch.randn(m, dtype=torch_dtype))
        self.gate_b = nn.Parameter(-sharp * centres**2 / 2 + 0.1 * torch.randn(m, dtype=torch_dtype))
        self.coef = nn.Parameter(0.1 * torch.randn(m, k + 1, dtype=torch_dtype))
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.softmax(x[:, None] * self.gate_w + self.gate_b, dim=-1)  # (n, m)
        powers = x[:, None] ** torch.arange(self.k + 1, dtype=torch_dtype)  # (n, k+1)
        return (gate * (powers @ self.coef.t())).sum(-1)


def run_mendes_jiang(spec: StudySpec, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    grid = torch.linspace(-1, 1, 2001, dtype=torch_dtype)
    for seed in spec.seeds:
        gen = torch.Generator().manual_seed(seed)
        x_all = torch.rand(max(spec.sample_sizes), generator=gen, dtype=torch_dtype) * 2 - 1
        y_all = mj_target(x_all) + spec.noise * torch.randn(x_all.shape, generator=gen, dtype=torch_dtype)
        for n in spec.sample_sizes:
            x, y = x_all[:n], y_all[:n]  # nested samples: each seed's curve is one growing data set
            for m in spec.experts:
                for k in spec.orders:
                    model = fit_lbfgs(partial(_new, PolynomialExperts, m, k), partial(_mse, x=x, y=y), spec.restarts,
                                      spec.max_iter, seed)
                    with torch.no_grad():
                        kl = float(((model(grid) - mj_target(grid)) ** 2).mean() / (2 * spec.noise**2))
                    rows.append({"seed": seed, "n": n, "m": m, "k": k, "kl": kl, "params": m * (k + 1) + 2 * (m - 1)})
        log(f"seed {seed} done")
    return rows


# ------------------------------------------------------------------------ DeepSeekMoE (Nguyen et al. 2025)

DS_SHARED = (torch.tensor([1.0, -0.5]), 0.2)
DS_ROUTED = [(torch.tensor([2.0, 1.0]), -0.5), (torch.tensor([-1.5, 2.0]), 0.5)]
DS_GATE = [(torch.tensor([3.0, 0.0]), 0.0), (torch.tensor([-3.0, 0.0]), 0.0)]


def _gate(kind: str, logits: torch.Tensor) -> torch.Tensor:
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    s = torch.sigmoid(logits)
    return s / s.sum(-1, keepdim=True)


def ds_truth(x: torch.Tensor, gate: str) -> torch.Tensor:
    """The DeepSeekMoE study's regression function: shared expert + gated routed experts."""
    a_s, b_s = DS_SHARED
    logits = torch.stack([x @ w.to(x) + c for w, c in DS_GATE], -1)
    routed = torch.stack([torch.tanh(x @ a.to(x) + b) for a, b in DS_ROUTED], -1)
    return torch.tanh(x @ a_s.to(x) + b_s) + (_gate(gate, logits) * routed).sum(-1)


class GatedTanhExperts(nn.Module):
    """``[tanh(a_sᵀx + b_s)] + Σ_e g_e(x)·tanh(a_eᵀx + b_e)`` with a softmax or normalized sigmoid gate."""

    def __init__(self, gate: str, n_routed: int, shared: bool, d: int = 2):
        super().__init__()
        self.gate_kind = gate
        self.gate = nn.Linear(d, n_routed).to(torch_dtype)
        self.a = nn.Parameter(torch.randn(n_routed, d, dtype=torch_dtype))
        self.b = nn.Parameter(0.5 * torch.randn(n_routed, dtype=torch_dtype))
        self.shared: nn.Module | None = nn.Linear(d, 1).to(torch_dtype) if shared else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (_gate(self.gate_kind, self.gate(x)) * torch.tanh(x @ self.a.t() + self.b)).sum(-1)
        if self.shared is not None:
            y = y + torch.tanh(self.shared(x)).squeeze(-1)
        return y

    def routed_error(self) -> float:
        """Mean over true routed experts of the distance to the nearest fitted routed expert, in ``(a, b)``."""
        theta = torch.cat([self.a, self.b[:, None]], 1).detach()
        errs = [float((theta - torch.cat([a, torch.tensor([b])]).to(theta)).norm(dim=1).min()) for a, b in DS_ROUTED]
        return float(np.mean(errs))


def _gated_tanh_start(gate: str, shared: bool, noise: float | None, _start: int) -> GatedTanhExperts:
    """Three routed experts (+ shared): random, or the truth's experts, the redundant third a copy of the
    first, plus ``N(0, noise²)`` (the gate from the truth's gate parameters whatever its kind)."""
    model = GatedTanhExperts(gate, 3, shared)
    if noise is None:
        return model
    order = [0, 1, 0]
    with torch.no_grad():
        model.a.copy_(torch.stack([DS_ROUTED[i][0] for i in order]).to(torch_dtype))
        model.b.copy_(torch.tensor([DS_ROUTED[i][1] for i in order], dtype=torch_dtype))
        model.gate.weight.copy_(torch.stack([DS_GATE[i][0] for i in order]).to(torch_dtype))
        model.gate.bias.copy_(torch.tensor([DS_GATE[i][1] for i in order], dtype=torch_dtype))
        if isinstance(model.shared, nn.Linear):
            model.shared.weight.copy_(DS_SHARED[0].to(torch_dtype)[None])
            model.shared.bias.fill_(DS_SHARED[1])
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


def run_deepseek(spec: StudySpec, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for truth in ("norm_sigmoid", "softmax"):
        for seed in spec.seeds:
            gen = torch.Generator().manual_seed(seed)
            x_all = torch.rand(max(spec.sample_sizes), 2, generator=gen, dtype=torch_dtype) * 2 - 1
            y_all = ds_truth(x_all, truth) + spec.noise * torch.randn(x_all.shape[0], generator=gen, dtype=torch_dtype)
            x_test = torch.rand(20_000, 2, generator=gen, dtype=torch_dtype) * 2 - 1
            f_test = ds_truth(x_test, truth)
            for n in spec.sample_sizes:
                x, y = x_all[:n], y_all[:n]
                for gate in ("norm_sigmoid", "softmax"):
                    for shared in (True, False):
                        model = fit_lbfgs(partial(_gated_tanh_start, gate, shared, spec.init_noise),
                                          partial(_mse, x=x, y=y), spec.restarts, spec.max_iter, seed)
                        with torch.no_grad():
                            l2 = float(((model(x_test) - f_test) ** 2).mean())
                        rows.append({"truth": truth, "seed": seed, "n": n, "gate": gate, "shared": shared,
                                     "l2": l2, "routed_error": model.routed_error()})
            log(f"truth {truth}, seed {seed} done")
    return rows


# ----------------------------------------------------------- modified softmax gating (Nguyen et al. 2024)

MS_CLASSES = 3
#: true experts (slopes a (K-1,), intercepts b (K-1,)); class K is the reference; gate slope, gate intercept
#: (chosen so that exact-specified fits recover the experts at n = 16000: a Voronoi loss of 0.4, against 2.4
#: for gates of slope ±2 and weaker experts, whose likelihood is too flat to estimate at these n)
MS_VANISHING = [((0.0, 0.0), (2.0, -2.0), 4.0, 0.0), ((4.0, -3.0), (0.0, 1.0), -4.0, 0.0)]
MS_CONTROL = [((1.5, -1.5), (2.0, -2.0), 4.0, 0.0), ((4.0, -3.0), (0.0, 1.0), -4.0, 0.0)]


#: Every parameter of the fitted models lies in [-MS_BOUND, MS_BOUND]: the theory assumes a compact
#: parameter space, and without it the MLE of an over-specified logistic expert diverges (measured: Voronoi
#: losses of 10^5 from one redundant expert with huge slopes).
MS_BOUND = 10.0


class MultinomialLogisticExperts(nn.Module):
    """Softmax-gated multinomial logistic experts in one covariate: gate ``softmax_i(β₁ᵢ M(x) + β₀ᵢ)`` with
    ``M`` the identity (standard) or ``tanh`` (modified); expert ``i``: ``P(Y = ℓ | x, i) =
    softmax_ℓ(a_ℓᵢ x + b_ℓᵢ)``, class K the reference (``a_K = b_K = 0``). Parameters are stored raw and
    used as ``B·tanh(raw/B)`` (``B =`` :data:`MS_BOUND`), a compact parameter space as the theory assumes."""

    def __init__(self, n_experts: int, modified: bool, truth: list[tuple[Any, ...]] | None = None):
        super().__init__()
        self.modified = modified
        k = n_experts

        def raw(values: torch.Tensor) -> nn.Parameter:  # inverse of the bounding map
            return nn.Parameter(MS_BOUND * torch.atanh(values / MS_BOUND))

        if truth is None:
            self.beta1_raw = raw(torch.randn(k, dtype=torch_dtype))
            self.beta0_raw = raw(0.1 * torch.randn(k, dtype=torch_dtype))
            self.a_raw = raw(torch.randn(k, MS_CLASSES - 1, dtype=torch_dtype))
            self.b_raw = raw(0.5 * torch.randn(k, MS_CLASSES - 1, dtype=torch_dtype))
        else:
            self.beta1_raw = raw(torch.tensor([t[2] for t in truth], dtype=torch_dtype))
            self.beta0_raw = raw(torch.tensor([t[3] for t in truth], dtype=torch_dtype))
            self.a_raw = raw(torch.tensor([t[0] for t in truth], dtype=torch_dtype))
            self.b_raw = raw(torch.tensor([t[1] for t in truth], dtype=torch_dtype))

    @staticmethod
    def _bounded(raw: torch.Tensor) -> torch.Tensor:
        return MS_BOUND * torch.tanh(raw / MS_BOUND)

    @property
    def a(self) -> torch.Tensor:
        return self._bounded(self.a_raw)

    @property
    def b(self) -> torch.Tensor:
        return self._bounded(self.b_raw)

    def class_probs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P(Y | x) (n, K), gate (n, E))``."""
        mx = torch.tanh(x) if self.modified else x
        gate = torch.softmax(mx[:, None] * self._bounded(self.beta1_raw) + self._bounded(self.beta0_raw), dim=-1)
        logits = x[:, None, None] * self.a + self.b  # (n, E, K-1)
        logits = torch.cat([logits, torch.zeros_like(logits[..., :1])], -1)
        return (gate[..., None] * torch.softmax(logits, -1)).sum(1), gate

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p, _ = self.class_probs(x)
        return -torch.log(p.gather(1, y[:, None]).clamp_min(1e-300)).mean()


def voronoi_loss(fitted: MultinomialLogisticExperts, truth: MultinomialLogisticExperts, x: torch.Tensor) -> float:
    """``Σ_j |Σ_{i∈V_j} π_i − π*_j| + Σ_j Σ_{i∈V_j} π_i ‖θ_i − θ*_j‖`` with ``θ = (a, b)`` and ``π`` the mean
    gate weight on ``x``; ``V_j`` the fitted experts nearest to true expert ``j``."""
    with torch.no_grad():
        th = torch.cat([fitted.a, fitted.b], 1)
        th_true = torch.cat([truth.a, truth.b], 1)
        pi = fitted.class_probs(x)[1].mean(0)
        pi_true = truth.class_probs(x)[1].mean(0)
        dist = torch.cdist(th, th_true)  # (E_fit, E_true)
        cell = dist.argmin(1)
        loss = 0.0
        for j in range(th_true.shape[0]):
            members = cell == j
            loss += float((pi[members].sum() - pi_true[j]).abs())
            loss += float((pi[members] * dist[members, j]).sum())
    return loss


def _logistic_start(modified: bool, truth: list[tuple[Any, ...]], noise: float | None,
                    _start: int) -> MultinomialLogisticExperts:
    """Three experts: random, or the truth's two plus a copy of expert 1 (the vanishing one), plus noise."""
    if noise is None:
        return MultinomialLogisticExperts(3, modified)
    model = MultinomialLogisticExperts(3, modified, [truth[0], truth[1], truth[0]])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


def run_modified_softmax(spec: StudySpec, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    arms = [("standard, vanishing slope", False, MS_VANISHING), ("modified, vanishing slope", True, MS_VANISHING),
            ("standard, no vanishing slope (control)", False, MS_CONTROL)]
    for arm, modified, params in arms:
        truth = MultinomialLogisticExperts(2, modified, params)
        for seed in spec.seeds:
            gen = torch.Generator().manual_seed(seed)
            x_all = torch.randn(max(spec.sample_sizes), generator=gen, dtype=torch_dtype)
            with torch.no_grad():
                p_all, _ = truth.class_probs(x_all)
            y_all = torch.multinomial(p_all.float(), 1, generator=gen).squeeze(1)
            for n in spec.sample_sizes:
                x, y = x_all[:n], y_all[:n]
                model = fit_lbfgs(partial(_logistic_start, modified, params, spec.init_noise), partial(_nll, x=x, y=y),
                                  spec.restarts, spec.max_iter, seed)
                rows.append({"arm": arm, "seed": seed, "n": n, "voronoi": voronoi_loss(model, truth, x_all[:20_000])})
            log(f"{arm}, seed {seed} done")
    return rows


# ------------------------------------------------------------------------------------ analysis and report


def _curves(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], metric: str,
            ns: list[int], seeds: list[int]) -> dict[Any, np.ndarray]:
    """``{group: (seeds, len(ns)) errors}``."""
    out: dict[Any, np.ndarray] = {}
    for r in rows:
        arr = out.setdefault(key(r), np.full((len(seeds), len(ns)), np.nan))
        arr[seeds.index(r["seed"]), ns.index(r["n"])] = r[metric]
    return out


def _slope_ci(ns: list[int], arr: np.ndarray, lo: int = 0) -> tuple[float, float, float]:
    return mean_ci([slope(ns[lo:], row[lo:]) for row in arr])


def _fmt(ci: tuple[float, float, float], digits: int = 2) -> str:
    return f"{ci[0]:.{digits}f} [{ci[1]:.{digits}f}, {ci[2]:.{digits}f}]"


def _plot(path: Path, ns: list[int], curves: dict[str, np.ndarray], title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, arr in curves.items():
        mean = np.exp(np.log(arr).mean(0))  # geometric mean over seeds (log-log axes)
        cis = [mean_ci(np.log(arr[:, j])) for j in range(arr.shape[1])]
        line, = ax.plot(ns, mean, marker="o", ms=3, label=label)
        ax.fill_between(ns, [math.exp(c[1]) for c in cis], [math.exp(c[2]) for c in cis], alpha=0.2, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size n")
    ax.set_ylabel(f"{ylabel}\n(geometric mean over seeds, 95% CI)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


Interval = tuple[float, float, float]
"""``(mean, low, high)`` of a 95% t-interval over seeds, as :func:`mean_ci` returns it."""

VERDICT_STANDARD = ("Verdicts: a claim is *confirmed* only when the 95% intervals support it (an interval lies wholly "
                    "on the claimed side of the other interval or bound, or wholly inside a claimed range), *not "
                    "confirmed* when they contradict it (wholly on the other side, or outside the range), and "
                    "*inconclusive* when they overlap; a claim made of several parts is confirmed when every part is, "
                    "not confirmed when any part is, else inconclusive. Means alone never decide a verdict.")


def ci_verdict(value: Interval, lo: Interval | float = -math.inf, hi: Interval | float = math.inf) -> bool | None:
    """Judge the claim ``lo < value < hi`` from 95% intervals (the standard in :data:`VERDICT_STANDARD`).

    A bound is a number or another quantity's interval: ``ci_verdict(a, hi=b)`` claims ``a < b``,
    ``ci_verdict(a, lo=0.0)`` claims ``a > 0``, ``ci_verdict(a, -1.2, -0.8)`` claims ``a`` lies in that range.

    :param value: the quantity's ``(mean, low, high)`` interval
    :param lo: lower bound of the claim (its interval's *high* end must lie below ``value``'s low end to confirm)
    :param hi: upper bound of the claim (its interval's *low* end must lie above ``value``'s high end to confirm)
    :return: True (confirmed: the interval lies wholly inside the claimed region), False (not confirmed: wholly
        outside it), None (inconclusive: the intervals overlap)
    """
    lo_iv = lo if isinstance(lo, tuple) else (lo, lo, lo)
    hi_iv = hi if isinstance(hi, tuple) else (hi, hi, hi)
    _, low, high = value
    if low > lo_iv[2] and high < hi_iv[1]:
        return True
    if high < lo_iv[1] or low > hi_iv[2]:
        return False
    return None


def all_verdicts(parts: Sequence[bool | None]) -> bool | None:
    """Combine the verdicts of a claim's parts: confirmed when all are, not confirmed when any is not, else None."""
    if any(p is False for p in parts):
        return False
    return True if all(p is True for p in parts) else None


def _verdict(ok: bool | None) -> str:
    return {True: "**confirmed**", False: "**not confirmed**", None: "**inconclusive**"}[ok]


def _word(ok: bool | None) -> str:
    return {True: "confirmed", False: "not confirmed", None: "inconclusive"}[ok]


def report_mendes_jiang(spec: StudySpec, rows: list[dict[str, Any]], out: Path) -> list[str]:
    ns, seeds = sorted(spec.sample_sizes), list(spec.seeds)
    curves = _curves(rows, lambda r: (r["m"], r["k"]), "kl", ns, seeds)
    lines = [f"| m | k | params | KL at n={ns[0]} | KL at n={ns[-1]} | slope on log n (all n) |", "|---|---|---|---|---|---|"]
    for (m, k), arr in sorted(curves.items()):
        params = m * (k + 1) + 2 * (m - 1)
        lines.append(f"| {m} | {k} | {params} | {_fmt(mean_ci(arr[:, 0]), 4)} | {_fmt(mean_ci(arr[:, -1]), 5)} | "
                     f"{_fmt(_slope_ci(ns, arr))} |")
    for k in spec.orders:
        _plot(out / f"mendes_jiang_k{k}.png", ns, {f"m={m}": curves[(m, k)] for m in spec.experts},
              f"Mendes & Jiang: KL vs n, polynomial order k={k}", "KL(f, f̂)")
    # claims
    richest = (max(spec.experts), max(spec.orders))
    s_rich = _slope_ci(ns, curves[richest])
    c1 = ci_verdict(s_rich, -1.2, -0.8)
    cis = {key: [mean_ci(arr[:, j]) for j in range(len(ns))] for key, arr in curves.items()}

    def best_m(k: int, j: int) -> int | None:
        """The m with the lowest KL at ``ns[j]``, or None when its interval overlaps another m's."""
        at = {m: cis[(m, k)][j] for m in spec.experts}
        top = min(at, key=lambda m: at[m][0])
        return top if all(ci_verdict(at[top], hi=at[m]) for m in at if m != top) else None

    best = {k: [best_m(k, j) for j in range(len(ns))] for k in spec.orders}
    parts: list[bool | None] = []
    rises: list[bool | None] = []
    for seq in best.values():
        known = [m for m in seq if m is not None]
        fell = any(a > b for i, a in enumerate(known) for b in known[i + 1:])
        rose = any(a < b for i, a in enumerate(known) for b in known[i + 1:])
        parts.append(False if fell else (True if len(known) == len(seq) else None))  # never falls
        rises.append(True if rose else (False if len(known) == len(seq) else None))  # rises somewhere
    c2 = all_verdicts([*parts, True if any(r is True for r in rises) else
                       (False if all(r is False for r in rises) else None)])
    floors_m = [ci_verdict(cis[(spec.experts[-1], k)][-1], hi=cis[(spec.experts[0], k)][-1]) for k in spec.orders]
    floors_k = [ci_verdict(cis[(m, spec.orders[-1])][-1], hi=cis[(m, spec.orders[0])][-1]) for m in spec.experts]
    c3 = all_verdicts(floors_m + floors_k)
    flat = [(m, k) for (m, k) in curves if m == min(spec.experts) and k == min(spec.orders)]
    s_flat = _slope_ci(ns, curves[flat[0]]) if flat else (float("nan"),) * 3
    c4 = ci_verdict(s_flat, lo=-0.3)
    shown = {k: "[" + ", ".join("?" if m is None else str(m) for m in seq) + "]" for k, seq in best.items()}
    claims = [
        f"1. *The estimation term falls as log n / n once approximation is negligible.* Richest model "
        f"(m={richest[0]}, k={richest[1]}): slope {_fmt(s_rich)}; criterion: the 95% interval lies inside [-1.2, -0.8] "
        f"(the local slope of log n / n is -1 + 1/ln n) → {_verdict(c1)}.",
        f"2. *Trade-off: the best number of experts grows with n (sublinearly, m ≍ (n / log n)^(s/(s+2a))).* Best m "
        f"at n = {ns} (? where the best m's interval overlaps another m's): "
        f"{'; '.join(f'k={k}: {seq}' for k, seq in shown.items())}; criterion: it never falls as n grows, for every k, "
        f"and rises for at least one k, counting only best m's whose intervals separate → {_verdict(c2)}.",
        f"3. *The approximation floor m^(-2(k+1)) falls with both m and k.* At n={ns[-1]}, m={spec.experts[-1]} has a "
        f"lower KL than m={spec.experts[0]} for each k ({[_word(v) for v in floors_m]}) and k={spec.orders[-1]} than "
        f"k={spec.orders[0]} for each m ({[_word(v) for v in floors_k]}) → {_verdict(c3)}.",
        f"4. *A model too small to approximate stops improving with n.* m={min(spec.experts)}, k={min(spec.orders)}: "
        f"slope {_fmt(s_flat)}; criterion: the interval lies above -0.3 → {_verdict(c4)}.",
    ]
    return ["## Results", "", *lines, "", "Plots: " + ", ".join(f"`mendes_jiang_k{k}.png`" for k in spec.orders),
            "", "## Theory claims", "", *claims]


def report_deepseek(spec: StudySpec, rows: list[dict[str, Any]], out: Path) -> list[str]:
    ns, seeds = sorted(spec.sample_sizes), list(spec.seeds)
    lines = []
    verdicts = []
    for truth in ("norm_sigmoid", "softmax"):
        sub = [r for r in rows if r["truth"] == truth]
        name = lambda r: f"{r['gate']}{' + shared' if r['shared'] else ''}"  # noqa: E731
        l2 = _curves(sub, name, "l2", ns, seeds)
        rt = _curves(sub, name, "routed_error", ns, seeds)
        lines += [f"### Truth: {truth} gate + a shared expert", "",
                  f"| fitted model | L2 error at n={ns[-1]} | L2 slope | routed-expert error at n={ns[-1]} "
                  "| routed-error slope |",
                  "|---|---|---|---|---|"]
        for label in sorted(l2):
            lines.append(f"| {label} | {_fmt(mean_ci(l2[label][:, -1]), 4)} | {_fmt(_slope_ci(ns, l2[label]))} | "
                         f"{_fmt(mean_ci(rt[label][:, -1]), 3)} | {_fmt(_slope_ci(ns, rt[label]))} |")
        lines.append("")
        _plot(out / f"deepseek_{truth}_l2.png", ns, l2, f"DeepSeekMoE study, truth {truth}: regression L2 error", "L2 error")
        _plot(out / f"deepseek_{truth}_routed.png", ns, rt, f"DeepSeekMoE study, truth {truth}: routed-expert error",
              "parameter error")
        last = {label: mean_ci(arr[:, -1]) for label, arr in rt.items()}
        shared_better = all_verdicts([ci_verdict(last[f"{g} + shared"], hi=last[g]) for g in ("norm_sigmoid", "softmax")])
        ns_vs_sm = ci_verdict(last["norm_sigmoid + shared"], hi=last["softmax + shared"])
        ns_slope = _slope_ci(ns, rt["norm_sigmoid + shared"])
        sm_slope = _slope_ci(ns, rt["softmax + shared"])
        verdicts.append((truth, shared_better, ns_vs_sm, ns_slope, sm_slope))
    claims = []
    sb = all_verdicts([v[1] for v in verdicts])
    claims.append(f"1. *Shared experts make routed-expert estimation more sample efficient.* Criterion: with a shared "
                  f"expert the routed experts' error at n={ns[-1]} is lower than without (intervals separate), for both "
                  f"gates and both truths. Per truth: {[(v[0], _word(v[1])) for v in verdicts]} → {_verdict(sb)}. "
                  f"(Caveat: without a shared expert the routed experts must absorb the shared part, which the tanh "
                  f"family cannot represent exactly.)")
    fair = next(v for v in verdicts if v[0] == "softmax")
    verdict = all_verdicts([v[2] for v in verdicts])
    claims.append(f"2. *Normalized sigmoid gating estimates experts more sample-efficiently than softmax gating.* "
                  f"Criterion: with a shared expert, the routed experts' error at n={ns[-1]} is lower under the "
                  f"normalized sigmoid than under softmax (intervals separate), for both truths. Per truth: "
                  f"{[(v[0], _word(v[2])) for v in verdicts]}; routed-error slopes under the softmax truth (where softmax "
                  f"is well specified): normalized sigmoid {_fmt(fair[3])}, softmax {_fmt(fair[4])} → {_verdict(verdict)}.")
    return ["## Results", "", *lines, "Plots: `deepseek_<truth>_l2.png`, `deepseek_<truth>_routed.png`", "",
            "## Theory claims", "", *claims]


def report_modified_softmax(spec: StudySpec, rows: list[dict[str, Any]], out: Path) -> list[str]:
    ns, seeds = sorted(spec.sample_sizes), list(spec.seeds)
    curves = _curves(rows, lambda r: r["arm"], "voronoi", ns, seeds)
    half = len(ns) // 2  # the upper half of n: closer to the asymptotic regime the rates describe
    lines = [f"| arm | Voronoi loss at n={ns[0]} | at n={ns[-1]} | slope on log n | slope, n >= {ns[half]} |",
             "|---|---|---|---|---|"]
    slopes = {}
    for arm, arr in curves.items():
        slopes[arm] = _slope_ci(ns, arr)
        lines.append(f"| {arm} | {_fmt(mean_ci(arr[:, 0]), 3)} | {_fmt(mean_ci(arr[:, -1]), 3)} | {_fmt(slopes[arm])} | "
                     f"{_fmt(_slope_ci(ns, arr, half))} |")
    rises = {arm: float(np.mean(np.diff(np.log(arr), axis=1) > 0)) for arm, arr in curves.items()}
    lines += ["", "Fit-to-fit spread: share of steps to the next n at which a seed's error *rose*: "
              + "; ".join(f"{arm} {100 * r:.0f}%" for arm, r in rises.items())
              + " (0% for a clean monotone curve; large shares mean the slopes are limited by the spread between fits, "
              "not only by the range of n)."]
    _plot(out / "modified_softmax.png", ns, curves, "Modified vs standard softmax gating (multinomial logistic MoE)",
          "Voronoi loss of expert parameters")
    std, mod = slopes["standard, vanishing slope"], slopes["modified, vanishing slope"]
    ctrl = slopes["standard, no vanishing slope (control)"]
    c1 = ci_verdict(mod, hi=std)  # modified steeper (more negative) than standard
    c2 = ci_verdict(mod, hi=0.0)
    claims = [
        f"1. *With vanishing expert slopes, standard softmax gating estimates experts more slowly than modified "
        f"gating.* Slopes: standard {_fmt(std)}, modified {_fmt(mod)}; criterion: the intervals separate with "
        f"standard flatter → {_verdict(c1)}.",
        f"2. *Modified gating restores a polynomial rate* (for a redundant, over-specified expert the expected "
        f"slope is about -1/4, against about 0 for a 1/log n rate). Modified slope {_fmt(mod)}; criterion: upper "
        f"bound below 0 → {_verdict(c2)}. (By the same criterion the standard arm with vanishing slopes is "
        f"{_word(ci_verdict(std, hi=0.0))}, upper bound {std[2]:.2f}; a 1/log n rate's local "
        f"slope, -1/ln n, runs from {-1 / math.log(ns[0]):.2f} to {-1 / math.log(ns[-1]):.2f} over this range, so the "
        f"criterion tells a falling error from a flat one, not a polynomial rate from 1/log n.)",
        f"3. *Control:* without vanishing slopes standard gating's slope is {_fmt(ctrl)} (the theory's polynomial "
        f"regime, about -1/4 for the over-specified expert; compare with claim 1's standard arm). A 1/log n rate has a "
        f"local log-log slope of -1/ln n ({-1 / math.log(ns[0]):.2f} to "
        f"{-1 / math.log(ns[-1]):.2f} here) against -1/4 for n^(-1/4), so telling them apart takes a wide "
        f"range of n and tight intervals; this study spans {ns[-1] / ns[0]:.0f}x in n with {len(seeds)} seeds. A verdict "
        f"other than 'confirmed' says this study cannot tell, not that the theory is wrong. Verdicts use the slopes over "
        f"all n; the upper-half slopes are shown for reference.",
    ]
    return ["## Results", "", *lines, "", "Plot: `modified_softmax.png`", "", "## Theory claims", "", *claims]


STUDIES: dict[str, tuple[Callable[..., list[dict[str, Any]]], Callable[..., list[str]]]] = {
    "mendes_jiang": (run_mendes_jiang, report_mendes_jiang),
    "deepseek": (run_deepseek, report_deepseek),
    "modified_softmax": (run_modified_softmax, report_modified_softmax),
}


def run_study(spec_path: str | Path, out: str | Path, log: Callable[[str], None] = print) -> Path:
    """Run a study spec; write ``results.json`` (every fit), ``report.md`` and plots into a new directory
    ``out/<name>-<time>``.

    :return: the directory written
    """
    from rewardlab.paths import new_directory
    from rewardlab.runtime import limit_threads

    limit_threads()
    if _study_kind(spec_path) == "mt10":
        return _run_mt10(spec_path, out, log)
    spec = load_study(spec_path)
    run, report = STUDIES[spec.study]
    directory = new_directory(out, spec.name)
    start = time.perf_counter()
    rows = run(spec, log)
    wall = time.perf_counter() - start
    (directory / "results.json").write_text(json.dumps({"spec": spec.model_dump(), "wall_s": wall, "fits": rows,
                                                        "spec_path": Path(spec_path).as_posix()}, indent=0))
    return write_study_report(directory)


def write_study_report(directory: str | Path) -> Path:
    """(Re)write ``report.md`` and the plots of a finished study from its ``results.json``.

    :return: the directory
    """
    directory = Path(directory)
    data = json.loads((directory / "results.json").read_text())
    spec = StudySpec.model_validate(data["spec"])
    rows, wall, spec_path = data["fits"], data["wall_s"], data.get("spec_path", f"experiments/{spec.name}.yaml")
    body = STUDIES[spec.study][1](spec, rows, directory)
    header = [f"# {spec.name}", "", spec.description.strip(), "",
              f"Command: `rewardlab run {spec_path}` ({len(rows)} fits, {wall / 60:.1f} min on one "
              f"CPU thread). Seeds {list(spec.seeds)}; n = {sorted(spec.sample_sizes)}; L-BFGS, {spec.restarts} "
              f"start(s) x {spec.max_iter} iterations per fit. Tables: mean over seeds [95% t-interval]; slopes are "
              f"least-squares fits of log error on log n, one per seed.", "", VERDICT_STANDARD, ""]
    (directory / "report.md").write_text("\n".join(header + body) + "\n")
    return directory


def _study_kind(path: str | Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data.get("study") if isinstance(data, dict) else None


def _run_mt10(spec_path: str | Path, out: str | Path, log: Callable[[str], None]) -> Path:
    import yaml

    from rewardlab.config import validate_config
    from rewardlab.moe.multitask import MT10Spec, run_mt10
    from rewardlab.paths import new_directory

    spec = validate_config(MT10Spec, yaml.safe_load(Path(spec_path).read_text()), f"spec {spec_path}")
    directory = new_directory(out, spec.name)
    start = time.perf_counter()
    body = run_mt10(spec_path, spec, directory, log)
    wall = time.perf_counter() - start
    header = [f"# {spec.name}", "", spec.description.strip(), "",
              f"Command: `rewardlab run {Path(spec_path).as_posix()}` ({wall / 60:.1f} min, device {spec.device}). "
              f"MetaWorld v3 MT10, one-hot task ids, V2 reward, horizon {spec.max_episode_steps}, {spec.steps_per_task} "
              f"steps per task, seeds {list(spec.seeds)}, SAC settings {spec.sac}.", ""]
    (directory / "report.md").write_text("\n".join(header + body) + "\n")
    return directory
