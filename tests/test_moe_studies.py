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
    fit_lbfgs,
    is_study_file,
    load_study,
    mean_ci,
    run_study,
    slope,
    voronoi_loss,
)

REPO = Path(__file__).resolve().parents[1]


def test_slope_and_interval_by_hand() -> None:
    assert slope([10, 100, 1000], [1.0, 0.1, 0.01]) == pytest.approx(-1.0)
    m, lo, hi = mean_ci([1.0, 3.0])
    assert m == 2.0 and lo < 1.0 and hi > 3.0  # t(1) interval is wide: 2 ± 12.7


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
