"""Summary statistics over seeds: the interquartile mean (IQM) and its 95% stratified-bootstrap
confidence interval, as rliable computes them.

RL results vary a lot between seeds and runs are expensive, so a report rests on few seeds (often 2
to 5). The mean with a Student-t interval is a poor summary there: the t quantile for 2 seeds is 12.7,
so the interval is many times wider than the data and leaves the metric's range (a success rate of
``0.90 ± 1.27``). Following Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS), and their library rliable, every table and curve shows instead:

- the **IQM**: the mean of the middle 50% of runs (the 25% trimmed mean, scipy's ``trim_mean``: it
  drops ``int(n / 4)`` runs at each end). It is robust to one outlying seed yet uses more of the data
  than the median. With fewer than 4 runs nothing is trimmed and the IQM is the mean.
- a **95% stratified-bootstrap confidence interval** (percentile method): the runs are resampled with
  replacement ``reps`` times and the IQM recomputed on each resample; the interval is the 2.5 and
  97.5 percentiles of those. A percentile interval of a trimmed mean never leaves the range of the
  data, and it is clipped to the metric's range besides (``bounds``: ``(0, 1)`` for a success rate).
  With 2 runs it is legitimately wide (it spans both runs), but it says only what the data allow.
- ``n``, the number of runs it rests on. With one run there is no interval, and :meth:`Estimate.format`
  says so rather than print a zero-width one.

The bootstrap uses a fixed seed (:data:`SEED`), so the same data give the same interval and a report
regenerated from the same store has the same text. rliable draws its resampling indices from NumPy's
global random state (its ``StratifiedBootstrap.update_indices`` calls ``np.random.choice`` and ignores
the ``random_state`` argument), so :func:`iqm_ci` seeds that state for the call and restores it after;
it is not safe to call from several threads at once.

rliable (and arch, pandas) take over a second to import, so they are imported inside the functions
that bootstrap: ``import rewardlab.stats`` stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples per interval. rliable's default is 50,000 (about 1 s per interval here); with
#: 2,000 (about 0.04 s) the ends of a 95% interval moved by at most 2% of its width (measured on 2 to
#: 10 runs), and by nothing for 5 runs or fewer, where they are the extreme resamples.
REPS = 2000
#: The bootstrap's random seed: fixed, so a report is reproducible.
SEED = 0
#: A success rate's range; returns are unbounded (``bounds=None``).
SUCCESS_BOUNDS: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Estimate:
    """The IQM of ``n`` runs and its confidence interval.

    :param point: the IQM (``nan`` when ``n == 0``)
    :param low: the interval's lower end; ``None`` when ``n < 2`` (one run has no interval)
    :param high: the interval's upper end; ``None`` when ``n < 2``
    :param n: number of runs (seeds) it rests on
    :param confidence: confidence level of the interval (0.95 for a 95% interval)
    """

    point: float
    low: float | None
    high: float | None
    n: int
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def format(self, digits: int = 2) -> str:
        """``0.90 [0.80, 1.00] (IQM, n=2)``, ``5.00 (n=1, no interval)`` or ``—`` when empty.

        :param digits: decimals of the point and of the interval's ends
        """
        if self.n == 0 or not math.isfinite(self.point):
            return "—"
        if self.low is None or self.high is None:
            return f"{self.point:.{digits}f} (n={self.n}, no interval)"
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] (IQM, n={self.n})"


@dataclass(frozen=True)
class CurveEstimate:
    """Pointwise IQM of ``n`` aligned learning curves and its confidence band.

    :param point: the IQM over runs at each point, shape ``(n_points,)``
    :param low: the band's lower edge, shape ``(n_points,)``; ``None`` when ``n < 2``
    :param high: the band's upper edge, shape ``(n_points,)``; ``None`` when ``n < 2``
    :param n: number of runs (curves)
    :param confidence: confidence level of the band
    """

    point: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    n: int
    confidence: float = CONFIDENCE


def iqm(values: Iterable[float]) -> float:
    """The interquartile mean of ``values`` (rliable's ``aggregate_iqm``: the 25% trimmed mean).

    :param values: one number per run, e.g. one final return per seed; at least one
    """
    x = _as_runs(values)
    from rliable import metrics

    return float(metrics.aggregate_iqm(x))


def iqm_ci(
    values: Iterable[float],
    bounds: tuple[float, float] | None = None,
    reps: int = REPS,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """IQM of ``values`` (e.g. one final evaluation per seed) and its stratified-bootstrap interval.

    :param values: one finite number per run, any count (none gives an empty estimate, one a point
        without an interval)
    :param bounds: the metric's range ``(low, high)``, e.g. :data:`SUCCESS_BOUNDS` for a success rate;
        the interval is clipped to it. ``None``: unbounded (returns)
    :param reps: bootstrap resamples
    :param seed: the bootstrap's random seed (same values and seed: same interval)
    :param confidence: confidence level, e.g. 0.95
    :raises ValueError: a value is not finite or lies outside ``bounds``
    """
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be one number per run, got shape {x.shape}")
    _check(x, bounds)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), None, None, 0, confidence)
    if n == 1:
        return Estimate(float(x[0]), None, None, 1, confidence)
    if np.all(x == x[0]):  # every resample has this IQM: the interval is the point, no bootstrap needed
        return Estimate(float(x[0]), float(x[0]), float(x[0]), n, confidence)
    point = iqm(x)
    low, high = _bootstrap(x[:, None], reps, seed, confidence)
    low, high = _clip(low, high, bounds)
    return Estimate(point, float(low[0]), float(high[0]), n, confidence)


def iqm_ci_pointwise(
    curves: np.ndarray,
    bounds: tuple[float, float] | None = None,
    reps: int = REPS,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> CurveEstimate:
    """Pointwise IQM of aligned learning curves and a stratified-bootstrap band, as rliable draws
    sample-efficiency curves (the IQM at each point with its 95% interval).

    At every point the runs are resampled independently (rliable's stratified bootstrap treats each
    point as a stratum), so the band is a pointwise interval, not a simultaneous one.

    :param curves: array ``(n_runs, n_points)``: one curve per seed, on a shared step grid
    :param bounds: the metric's range, as in :func:`iqm_ci` (the band is clipped to it)
    :param reps: bootstrap resamples
    :param seed: the bootstrap's random seed
    :param confidence: confidence level of the band
    :raises ValueError: ``curves`` is not 2-D with at least one run, or holds non-finite or
        out-of-range values
    """
    x = np.asarray(curves, dtype=float)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"curves must be an array (n_runs >= 1, n_points), got shape {x.shape}")
    _check(x, bounds)
    n = int(x.shape[0])
    point = _iqm_columns(x)
    if n < 2 or x.shape[1] == 0:
        return CurveEstimate(point, None, None, n, confidence)
    low, high = _clip(*_bootstrap(x, reps, seed, confidence), bounds)
    return CurveEstimate(point, low, high, n, confidence)


# -- internals -----------------------------------------------------------------------------------
def _as_runs(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"the IQM needs one or more numbers, one per run; got shape {x.shape}")
    return x


def _check(x: np.ndarray, bounds: tuple[float, float] | None) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite (drop or repair the runs with nan or inf first)")
    if bounds is not None and x.size and (x.min() < bounds[0] or x.max() > bounds[1]):
        raise ValueError(f"values in [{x.min():g}, {x.max():g}] lie outside the metric's range {bounds}")


def _iqm_columns(scores: np.ndarray) -> np.ndarray:
    """The IQM of each column of ``scores`` ``(n_runs, k)``, shape ``(k,)``.

    Exactly scipy's ``trim_mean(scores, 0.25, axis=0)`` (so rliable's ``aggregate_iqm`` per column), in
    plain numpy: scipy's argument-checking wrapper costs about 0.2 ms a call, which is most of a
    bootstrap's time when it runs once per resample.
    """
    n = scores.shape[0]
    cut = int(0.25 * n)
    return np.sort(scores, axis=0)[cut : n - cut].mean(axis=0)


def _bootstrap(scores: np.ndarray, reps: int, seed: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """rliable's stratified-bootstrap percentile interval of the IQM of each column of ``scores``
    ``(n_runs, k)`` (each column its own stratum: runs are resampled independently per column);
    returns ``(low, high)``, each ``(k,)``."""
    from rliable import library

    # rliable resamples with np.random's global state (see the module docstring): seed it, then put
    # back whatever the caller had
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        _, intervals = library.get_interval_estimates(
            {"x": scores}, _iqm_columns, method="percentile", reps=reps, confidence_interval_size=confidence
        )
    finally:
        np.random.set_state(state)
    low, high = np.asarray(intervals["x"], dtype=float)
    return low, high


def _clip(low: np.ndarray, high: np.ndarray, bounds: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    if bounds is None:
        return low, high
    return np.clip(low, *bounds), np.clip(high, *bounds)
