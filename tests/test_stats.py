"""Statistics over seeds (:mod:`rewardlab.stats`): the IQM, its stratified-bootstrap interval kept in the
metric's range, and the report built on them from a real 2-seed store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardlab import stats
from rewardlab.runs import report as report_module
from rewardlab.runs.report import write_report
from rewardlab.stats import SUCCESS_BOUNDS, Estimate, iqm, iqm_ci, iqm_ci_pointwise
from rewardlab.store import NewTrial, RunStore
from rewardlab.types import CurvePoint, EvalResult, TrialResult

TASK = "metaworld/drawer-close-v3"


# -- the IQM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),  # drops 2 at each end: mean of 3, 4, 5, 6
        ([0, 100, 1, 2], 1.5),  # drops 0 and 100: robust to one outlying seed
        ([3, 1, 100, 2, 4], 3.0),  # n=5 drops int(1.25) = 1 at each end: mean of 2, 3, 4
        ([3.0, 1.0, 2.0], 2.0),  # fewer than 4 runs: nothing is trimmed, the mean
        ([0.9, 0.0], 0.45),
        ([7.0], 7.0),
    ],
)
def test_iqm_is_the_mean_of_the_middle_half(values: list[float], expected: float) -> None:
    assert iqm(values) == pytest.approx(expected)
    assert iqm_ci(values).point == pytest.approx(expected)


def test_the_fast_iqm_in_the_bootstrap_equals_rliables() -> None:
    from rliable.metrics import aggregate_iqm

    rng = np.random.default_rng(0)
    for n in range(1, 13):
        scores = rng.normal(size=(n, 5)) * 100
        expected = [aggregate_iqm(scores[:, j]) for j in range(5)]
        np.testing.assert_allclose(stats._iqm_columns(scores), expected, rtol=1e-12)
        np.testing.assert_allclose(iqm_ci_pointwise(scores).point, expected, rtol=1e-12)


# -- the interval ----------------------------------------------------------------------------------
def test_the_interval_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 3, 4, 5, 8, 13):
        est = iqm_ci(rng.lognormal(5, 1, size=n))
        assert est.n == n and est.low is not None and est.high is not None
        assert est.low <= est.point <= est.high
        assert est.low < est.high


def test_two_seeds_interval_is_hand_checkable_and_stays_in_zero_one() -> None:
    # resamples of (0.9, 0.0) have IQM (= mean) 0, 0.45 or 0.9 with probability 1/4, 1/2, 1/4: the 2.5%
    # and 97.5% points are 0 and 0.9. A t-interval would be 0.45 ± 5.72.
    est = iqm_ci([0.9, 0.0], bounds=SUCCESS_BOUNDS)
    assert (est.point, est.low, est.high, est.n) == (pytest.approx(0.45), 0.0, pytest.approx(0.9), 2)
    assert est.format() == "0.45 [0.00, 0.90] (IQM, n=2)"
    for values in ([1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.1, 0.9, 1.0], [1.0] * 5 + [0.0]):
        e = iqm_ci(values, bounds=SUCCESS_BOUNDS)
        assert e.low is not None and e.high is not None and 0.0 <= e.low <= e.point <= e.high <= 1.0


def test_the_interval_is_clipped_to_the_metrics_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # the percentile interval of a trimmed mean stays in the data's range by itself; the clip is what
    # keeps a success interval in [0, 1] whatever the bootstrap returns
    monkeypatch.setattr(stats, "_bootstrap", lambda scores, *a: (scores.min(0) - 0.5, scores.max(0) + 0.5))
    assert (iqm_ci([0.9, 0.0], bounds=SUCCESS_BOUNDS).low, iqm_ci([0.9, 0.0], bounds=SUCCESS_BOUNDS).high) == (0, 1)
    assert iqm_ci([0.9, 0.0]).low == pytest.approx(-0.5)  # returns are unbounded: nothing clipped
    band = iqm_ci_pointwise(np.array([[0.0, 0.9], [1.0, 0.2]]), bounds=SUCCESS_BOUNDS)
    assert band.low is not None and band.high is not None
    assert band.low.tolist() == [0.0, 0.0] and band.high.tolist() == [1.0, 1.0]


def test_one_seed_has_no_interval_and_says_so() -> None:
    est = iqm_ci([5.0])
    assert est == Estimate(5.0, None, None, 1) and not est.has_interval
    assert est.format() == "5.00 (n=1, no interval)"
    assert iqm_ci([]).format() == "—" and iqm_ci([]).n == 0
    assert Estimate(12.345, 10.0, 14.0, 4).format(1) == "12.3 [10.0, 14.0] (IQM, n=4)"
    single = iqm_ci_pointwise(np.array([[1.0, 2.0, 3.0]]))
    assert single.n == 1 and single.low is None and single.high is None and single.point.tolist() == [1, 2, 3]


def test_same_inputs_give_the_same_interval_and_the_callers_random_state_is_kept() -> None:
    values = [12.0, 3.5, 40.0, 7.25, 19.0, 1.0, 28.0, 33.0, 5.0, 16.0]
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    first = iqm_ci(values)
    assert np.random.rand() == expected_draw  # the bootstrap put back the global state it seeded
    np.random.seed(999)  # whatever the caller's state, the interval is the same
    assert iqm_ci(values) == first
    # the seed is what fixes it: another seed moves the ends of a 10-run interval
    others = {(e.low, e.high) for e in (iqm_ci(values, seed=s) for s in (1, 2, 3))}
    assert others - {(first.low, first.high)}


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the metric's range"):
        iqm_ci([0.5, 1.5], bounds=SUCCESS_BOUNDS)
    with pytest.raises(ValueError, match="finite"):
        iqm_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        iqm_ci_pointwise(np.array([1.0, 2.0]))


def test_pointwise_band_contains_the_curve() -> None:
    rng = np.random.default_rng(2)
    curves = rng.uniform(0, 1, size=(4, 30))
    band = iqm_ci_pointwise(curves, bounds=SUCCESS_BOUNDS)
    assert band.n == 4 and band.point.shape == band.low.shape == band.high.shape == (30,)  # type: ignore[union-attr]
    assert np.all((0 <= band.low) & (band.low <= band.point) & (band.point <= band.high) & (band.high <= 1))


def test_importing_stats_does_not_import_rliable() -> None:
    code = "import sys, rewardlab.stats; sys.exit('rliable' in sys.modules or 'arch' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


# -- the report from a real 2-seed store -----------------------------------------------------------
def _two_seed_run(out: Path) -> Path:
    """The case from the issue: 2 seeds, success 0.9 and 0.0, returns far apart."""
    with RunStore(out / "rewardlab.sqlite") as store:
        store.create_run("two-1", "two", "name: two\n")
        store.add_trials("two-1", [NewTrial(f"{TASK}|reference|sac|{s}", TASK, "reference", "sac", s, steps=6000)
                                   for s in (0, 1)])
        for row, (ret, hits) in zip(store.trials("two-1"), ((7567.7, 9), (9.6, 0)), strict=True):
            store.mark_running(row.id, out)
            curve = [CurvePoint(step=s, return_env=ret * s / 6000, success=min(1.0, hits / 10 * s / 3000))
                     for s in (0, 3000, 6000)]
            result = TrialResult(
                curve=curve,
                eval=EvalResult(env_return=[ret] * 10, program_return=[ret / 2] * 10,
                                success=[i < hits for i in range(10)], length=[500] * 10),
                wall_s=250.0, steps=6000,
            )
            store.mark_done(row.id, result, [(p.step, "return_env", p.return_env) for p in curve])
    return out / "two-1"


def test_a_two_seed_report_says_n_2_keeps_success_in_range_and_names_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _two_seed_run(tmp_path / "work" / "runs")
    bands: list[tuple[tuple[float, float] | None, stats.CurveEstimate]] = []

    def spy(curves: np.ndarray, bounds: tuple[float, float] | None = None) -> stats.CurveEstimate:
        bands.append((bounds, band := iqm_ci_pointwise(curves, bounds=bounds)))
        return band

    monkeypatch.setattr(report_module, "iqm_ci_pointwise", spy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = write_report(run_dir.resolve()).read_text()

    assert "2 seeds per cell" in text
    row = next(line for line in text.splitlines() if line.startswith("| reference | sac |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["reference", "sac", "2"]
    assert cells[3] == "3788.65 [9.60, 7567.70] (IQM, n=2)"
    assert cells[5] == "0.45 [0.00, 0.90] (IQM, n=2)"
    low, high = map(float, re.fullmatch(r"\S+ \[(\S+), (\S+)\] \(IQM, n=2\)", cells[5]).groups())  # type: ignore[union-attr]
    assert 0.0 <= low <= high <= 1.0
    # the plot's success band was clipped to [0, 1]
    (success_bounds, success_band), = [(b, e) for b, e in bands if b is not None]
    assert success_bounds == SUCCESS_BOUNDS and success_band.low is not None and success_band.high is not None
    assert success_band.low.min() >= 0.0 and success_band.high.max() <= 1.0
    assert (run_dir / f"curves_{TASK.replace('/', '_')}.png").read_bytes()[:4] == b"\x89PNG"

    (regenerate,) = [line for line in text.splitlines() if "regenerate this report" in line]
    assert str(tmp_path) not in regenerate and "/tmp" not in regenerate
    out_arg = re.search(r"--out (\S+?)`", regenerate).group(1)  # type: ignore[union-attr]
    assert not Path(out_arg).is_absolute()
    assert (Path.cwd() / out_arg).resolve() == run_dir.parent.resolve()
