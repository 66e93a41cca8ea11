"""Summary statistics over seeds: the mean and its 95% confidence interval (Student's t).

RL results vary a lot between seeds, so every table and curve in a report shows the mean over seeds
with a t-distribution confidence interval. With a single seed there is no interval: :class:`MeanCI`
then has ``half_width`` ``None`` and callers say so rather than print ``± 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values and the half-width of its confidence interval.

    :param mean: the sample mean (``nan`` when ``n == 0``)
    :param half_width: half-width of the interval, ``mean ± half_width``; ``None`` when ``n < 2``
    :param n: number of values
    :param confidence: confidence level of the interval (0.95 for a 95% CI)
    """

    mean: float
    half_width: float | None
    n: int
    confidence: float = 0.95

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def format(self, digits: int = 2) -> str:
        """``12.34 ± 0.56`` (CI half-width), ``12.34 (n=1, no CI)`` or ``—`` when empty."""
        if self.n == 0 or not math.isfinite(self.mean):
            return "—"
        if self.half_width is None:
            return f"{self.mean:.{digits}f} (n=1, no CI)"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def t_half_width(std: float | np.ndarray, n: int, confidence: float = 0.95) -> float | np.ndarray:
    """Half-width of the t confidence interval of a mean: ``t_{(1+c)/2, n-1} * std / sqrt(n)``.

    :param std: sample standard deviation(s) (``ddof=1``)
    :param n: number of samples; must be at least 2
    :param confidence: confidence level, e.g. 0.95
    """
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    t = _scipy_stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1)
    return t * np.asarray(std) / math.sqrt(n) if isinstance(std, np.ndarray) else float(t * std / math.sqrt(n))


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Mean and t-distribution confidence interval of ``values`` (e.g. one final return per seed).

    :param values: the samples; the interval assumes they are independent (different seeds)
    :param confidence: confidence level of the interval
    """
    x = np.asarray(list(values), dtype=float)
    n = int(x.size)
    if n == 0:
        return MeanCI(float("nan"), None, 0, confidence)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(mean, None, n, confidence)
    return MeanCI(mean, float(t_half_width(float(x.std(ddof=1)), n, confidence)), n, confidence)


def mean_ci_curves(curves: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray | None]:
    """Pointwise mean and CI half-width of several aligned curves.

    :param curves: array (n_seeds, n_points)
    :return: ``(mean, half_width)``; ``half_width`` is ``None`` for a single curve
    """
    curves = np.asarray(curves, dtype=float)
    n = curves.shape[0]
    mean = curves.mean(axis=0)
    if n < 2:
        return mean, None
    return mean, np.asarray(t_half_width(curves.std(axis=0, ddof=1), n, confidence))
