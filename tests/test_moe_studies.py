"""The synthetic convergence studies (rewardlab/moe/studies.py) and the MoE benchmark's pieces, at tiny sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardlab.errors import UserError
from rewardlab.moe.studies import (
    MS_VANISHING,
    MultinomialLogisticExperts,
    PolynomialExperts,
    StudySpec,
    all_verdicts,
    ci_verdict,
    fit_lbfgs,
    is_study_file,
    load_study,
    mean_ci,
    report_deepseek,
    report_modified_softmax,
    run_study,
    slope,
    voronoi_loss,
    write_study_report,
)

REPO = Path(__file__).resolve().parents[1]


def test_slope_and_interval_by_hand() -> None:
    assert slope([10, 100, 1000], [1.0, 0.1, 0.01]) == pytest.approx(-1.0)
    m, lo, hi = mean_ci([1.0, 3.0])
    assert m == 2.0 and lo < 1.0 and hi > 3.0  # t(1) interval is wide: 2 ± 12.7


def test_verdicts_follow_the_intervals_not_the_means() -> None:
    a, b = (0.1, 0.0, 0.2), (0.5, 0.4, 0.6)
    assert ci_verdict(a, hi=b) is True and ci_verdict(b, hi=a) is False  # a < b: separated either way
    assert ci_verdict((0.1, -1.0, 1.2), hi=b) is None  # lower mean, overlapping interval: inconclusive
    assert ci_verdict((-1.0, -1.1, -0.9), -1.2, -0.8) is True
    assert ci_verdict((-1.0, -1.3, -0.7), -1.2, -0.8) is None
    assert ci_verdict((-0.1, -0.2, 0.0), -1.2, -0.8) is False
    assert ci_verdict((-0.2, -0.3, -0.1), hi=0.0) is True and ci_verdict((0.1, -0.3, 0.5), hi=0.0) is None
    assert all_verdicts([True, True]) is True and all_verdicts([True, None]) is None
    assert all_verdicts([None, False]) is False


def _deepseek_rows(ns: list[int], routed: dict[str, list[float]]) -> list[dict[str, object]]:
    """Rows as run_deepseek writes them; ``routed[label]`` is the routed error per seed (the same at every n)."""
    rows: list[dict[str, object]] = []
    for truth in ("norm_sigmoid", "softmax"):
        for label, per_seed in routed.items():
            gate, shared = label.split(" + ")[0], label.endswith("shared")
            for seed, err in enumerate(per_seed):
                for n in ns:
                    rows.append({"truth": truth, "gate": gate, "shared": shared, "seed": seed, "n": n,
                                 "l2": err, "routed_error": err * (n / ns[0]) ** -0.5})
    return rows


def test_deepseek_verdicts_need_separated_intervals(tmp_path: Path) -> None:
    """Issue 10: a tiny run reported 'normalized sigmoid beats softmax: confirmed' from means whose intervals
    overlapped. Lower means with overlapping intervals are inconclusive; separated intervals confirm."""
    ns = [250, 500, 1000]
    spec = StudySpec(name="t", study="deepseek", seeds=[0, 1, 2], sample_sizes=ns)
    overlapping = {"norm_sigmoid + shared": [0.1, 0.9, 0.5], "softmax + shared": [0.2, 1.0, 0.6],
                   "norm_sigmoid": [5.0, 5.1, 5.05], "softmax": [5.0, 5.1, 5.05]}
    text = "\n".join(report_deepseek(spec, _deepseek_rows(ns, overlapping), tmp_path))
    claims = text.split("## Theory claims")[1].splitlines()
    assert "**confirmed**" in next(c for c in claims if c.startswith("1."))  # shared: about [-0.5, 1.5] vs [4.9, 5.2]
    assert "**inconclusive**" in next(c for c in claims if c.startswith("2."))
    separated = {**overlapping, "norm_sigmoid + shared": [0.10, 0.11, 0.105], "softmax + shared": [0.50, 0.51, 0.505]}
    text = "\n".join(report_deepseek(spec, _deepseek_rows(ns, separated), tmp_path))
    assert "**confirmed**" in next(c for c in text.split("## Theory claims")[1].splitlines() if c.startswith("2."))
    reversed_ = {**overlapping, "norm_sigmoid + shared": [0.50, 0.51, 0.505], "softmax + shared": [0.10, 0.11, 0.105]}
    text = "\n".join(report_deepseek(spec, _deepseek_rows(ns, reversed_), tmp_path))
    assert "**not confirmed**" in next(c for c in text.split("## Theory claims")[1].splitlines() if c.startswith("2."))


def test_modified_softmax_overlap_is_inconclusive_not_refuted(tmp_path: Path) -> None:
    """Standard steeper than modified on the means, intervals overlapping: inconclusive (was 'not confirmed')."""
    ns = [1000, 2000, 4000]
    spec = StudySpec(name="t", study="modified_softmax", seeds=[0, 1, 2], sample_sizes=ns)
    rate = {"standard, vanishing slope": [-0.5, -0.1, -0.3], "modified, vanishing slope": [-0.6, 0.2, -0.2],
            "standard, no vanishing slope (control)": [-0.3, -0.2, -0.25]}
    rows = [{"arm": arm, "seed": seed, "n": n, "voronoi": (n / ns[0]) ** r}
            for arm, per_seed in rate.items() for seed, r in enumerate(per_seed) for n in ns]
    claims = "\n".join(report_modified_softmax(spec, rows, tmp_path)).split("## Theory claims")[1].splitlines()
    assert "**inconclusive**" in next(c for c in claims if c.startswith("1."))
    assert "**inconclusive**" in next(c for c in claims if c.startswith("2."))  # modified slope interval spans 0


@pytest.mark.parametrize("name", ["moe_convergence_deepseek", "moe_convergence_deepseek_wide",
                                  "moe_convergence_mendes_jiang", "moe_convergence_modified_softmax",
                                  "moe_convergence_modified_softmax_wide"])
def test_committed_study_reports_match_their_results(tmp_path: Path, name: str) -> None:
    """Each committed report is what write_study_report makes of its results.json today (no stale verdicts)."""
    committed = REPO / "experiments" / "results" / name
    (tmp_path / "results.json").write_text((committed / "results.json").read_text())
    write_study_report(tmp_path)
    assert (tmp_path / "report.md").read_text() == (committed / "report.md").read_text()


def test_one_quadratic_expert_recovers_a_quadratic() -> None:
    x = torch.linspace(-1, 1, 200, dtype=torch.float64)
    y = 1.0 - 2.0 * x + 3.0 * x**2
    model = fit_lbfgs(lambda _s: PolynomialExperts(1, 2), lambda m: ((m(x) - y) ** 2).mean(), 1, 100, 0)
    assert torch.allclose(model.coef.detach(), torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64), atol=1e-5)


def test_voronoi_loss_is_zero_at_the_truth_and_positive_elsewhere() -> None:
    truth = MultinomialLogisticExperts(2, False, MS_VANISHING)
    x = torch.randn(500, dtype=torch.float64)
    assert voronoi_loss(truth, truth, x) == pytest.approx(0.0, abs=1e-12)
    other = MultinomialLogisticExperts(2, False, [((0.5, 0.0), (1.0, -1.0), 2.0, 0.0), MS_VANISHING[1]])
    assert voronoi_loss(other, truth, x) > 0.1


def test_bad_study_specs_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstudy: mendes_jiang\nseeds: [0, 1]\nsample_sizes: [5, 50, 500]\n")
    with pytest.raises(UserError, match="sample_sizes"):
        load_study(bad)
    bad.write_text("name: x\nstudy: nope\nseeds: [0, 1]\nsample_sizes: [50, 100, 500]\n")
    with pytest.raises(UserError, match="study"):
        load_study(bad)
    assert not is_study_file(REPO / "experiments" / "quickstart.yaml")


@pytest.mark.parametrize("spec", sorted((REPO / "experiments").glob("moe_convergence_*.yaml")))
def test_committed_study_specs_load(spec: Path) -> None:
    assert is_study_file(spec)
    load_study(spec)


def test_rewardlab_run_runs_a_tiny_study_and_states_verdicts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rewardlab.cli import app

    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\nstudy: mendes_jiang\nseeds: [0, 1]\nsample_sizes: [50, 100, 200]\nexperts: [1, 2]\n"
                    "orders: [0, 1]\nrestarts: 1\nmax_iter: 20\n")
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "tiny" / "report.md").read_text()
    assert "## Theory claims" in report and report.count("→ **") == 4
    assert (tmp_path / "out" / "tiny" / "mendes_jiang_k1.png").stat().st_size > 1000


@pytest.mark.parametrize("study", ["deepseek", "modified_softmax"])
def test_other_studies_run_at_tiny_sizes(tmp_path: Path, study: str) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"name: tiny\nstudy: {study}\nseeds: [0, 1]\nsample_sizes: [40, 80, 160]\nrestarts: 1\nmax_iter: 10\n")
    out = run_study(spec, tmp_path / "out", log=lambda _m: None)
    report = (out / "report.md").read_text()
    assert "## Theory claims" in report
    if study == "modified_softmax":  # the range of n is stated from the spec, and the upper-half slope shown
        assert "spans 4x in n with 2 seeds" in report and "| slope, n >= 80 |" in report


def test_bench_dense_baseline_matches_active_parameters() -> None:
    from benchmarks.moe import ROUTERS, dense_mlp, measure

    net = dense_mlp(49, 100_000)
    assert abs(sum(p.numel() for p in net.parameters()) - 100_000) < 600
    row = measure("topk", 16, repeats=2)
    assert abs(row["dense_params"] - row["active_params"]) / row["active_params"] < 0.01
    assert row["active_params"] < row["moe_params"]
    assert set(ROUTERS) >= {"topk", "expert_choice", "norm_sigmoid", "dense_to_sparse", "tsallis"}
