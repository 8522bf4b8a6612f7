"""Statistics over seeds for sweeps: t-intervals, paired log-loss comparisons, scaling exponents.

numpy and scipy only. Every function takes plain sequences and returns a frozen dataclass; callers
drop failed and diverged runs first (and say how many). Losses are compared on a log scale: a
ratio of losses is what "half the loss" means, and seed-to-seed spread of a loss is multiplicative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and a two-sided t-interval of the mean; NaN where n < 2."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def summarize(values: Sequence[float], *, confidence: float = 0.95) -> Summary:
    """Mean, std and t confidence interval of the mean of a sample.

    Args:
        values: the sample (e.g. one cell's final test losses over seeds), at least one value.
        confidence: coverage of the interval.
    Returns:
        A Summary; std, low and high are NaN for a single value.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("summarize needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, NAN, NAN, NAN)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Summary(int(x.size), mean, std, mean - half, mean + half)


def geometric_summary(values: Sequence[float], *, confidence: float = 0.95) -> Summary:
    """Geometric mean of positive values with the t-interval of the mean log, mapped back.

    Losses spread over orders of magnitude and are positive; an interval on log loss stays
    positive where the plain t-interval of a few seeds can reach below zero.

    Args:
        values: positive numbers (e.g. one cell's final test losses over seeds).
        confidence: coverage of the interval.
    Returns:
        A Summary: mean is the geometric mean, std the sample std of the natural log, low/high
        the interval's ends (NaN for a single value).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.all(x > 0):
        raise ValueError(f"geometric_summary needs at least one value, all > 0; got {values!r}")
    logs = summarize(np.log(x).tolist(), confidence=confidence)
    return Summary(logs.n, math.exp(logs.mean), logs.std, math.exp(logs.low), math.exp(logs.high))


@dataclass(frozen=True)
class Paired:
    """Paired comparison of losses a and b: geometric-mean ratio a/b with intervals and a p-value.

    ratio < 1 means a has the lower loss. low/high: t-interval of the ratio (the exponential of the
    t-interval of the mean log ratio); boot_low/boot_high: percentile bootstrap interval of the same
    ratio; p_value: two-sided paired t-test on log losses. NaN where n is too small.
    """

    n: int
    ratio: float
    low: float
    high: float
    boot_low: float
    boot_high: float
    p_value: float

    @property
    def winner(self) -> str | None:
        """"a" or "b" when the t-interval of the ratio excludes 1, else None (no clear winner)."""
        if math.isnan(self.low) or self.low <= 1 <= self.high:
            return None
        return "a" if self.high < 1 else "b"


def paired_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                 n_boot: int = 10_000, seed: int = 0) -> Paired:
    """Compare positive losses paired by position (e.g. by seed) on a log scale.

    Args:
        a, b: losses of the two models, a[i] paired with b[i]; all > 0.
        confidence: coverage of both intervals.
        n_boot: bootstrap resamples of the pairs.
        seed: seed of the bootstrap generator (the result is deterministic).
    Returns:
        A Paired; intervals and p-value are NaN for a single pair.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1 or xa.size == 0:
        raise ValueError(f"paired_ratio needs two equally long non-empty samples, got {xa.shape}, {xb.shape}")
    if not (np.all(xa > 0) and np.all(xb > 0) and np.all(np.isfinite(xa)) and np.all(np.isfinite(xb))):
        raise ValueError("paired_ratio needs finite losses > 0")
    d = np.log(xa) - np.log(xb)                                        # (n,) log ratios
    n, mean = int(d.size), float(d.mean())
    if n < 2:
        return Paired(1, math.exp(mean), NAN, NAN, NAN, NAN, NAN)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # every pair has the same ratio (up to rounding): no spread
        low = high = mean
        p = 1.0 if mean == 0 else 0.0
    else:
        se = sd / math.sqrt(n)
        half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * se
        low, high = mean - half, mean + half
        p = float(2 * sps.t.sf(abs(mean / se), n - 1))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)       # (n_boot,)
    tail = (1 - confidence) / 2
    b_low, b_high = np.quantile(means, [tail, 1 - tail])
    return Paired(n, math.exp(mean), math.exp(low), math.exp(high), math.exp(float(b_low)),
                  math.exp(float(b_high)), p)


@dataclass(frozen=True)
class ScalingFit:
    """loss ~ coefficient * params ** -exponent, fitted by least squares on log-log axes.

    stderr is the standard error of the exponent (NaN with fewer than three points).
    """

    exponent: float
    stderr: float
    coefficient: float
    n: int

    def predict(self, params: Sequence[float] | np.ndarray) -> np.ndarray:
        """Fitted loss at the given parameter counts."""
        return self.coefficient * np.asarray(params, dtype=float) ** -self.exponent


def scaling_fit(params: Sequence[float], losses: Sequence[float]) -> ScalingFit:
    """Least-squares fit of log(loss) against log(params).

    Args:
        params: parameter count of each run (at least two distinct values).
        losses: final loss of each run, > 0.
    Returns:
        The ScalingFit (exponent = minus the log-log slope).
    """
    x, y = np.asarray(params, dtype=float), np.asarray(losses, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("scaling_fit needs one loss per parameter count")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
        raise ValueError("scaling_fit needs finite parameter counts and losses > 0")
    if np.unique(x).size < 2:
        raise ValueError("scaling_fit needs at least two distinct parameter counts")
    lx, ly = np.log(x), np.log(y)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean()))) / sxx
    intercept = float(ly.mean()) - slope * float(lx.mean())
    n = int(x.size)
    stderr = NAN
    if n > 2:
        residual = ly - (intercept + slope * lx)
        stderr = math.sqrt(float(np.sum(residual**2)) / (n - 2) / sxx)
    return ScalingFit(-slope, stderr, math.exp(intercept), n)


def time_to_target(times: Sequence[float], losses: Sequence[float], target: float) -> float | None:
    """First time at which a curve's loss is at or below a target.

    Args:
        times: evaluation times in seconds, ascending (a run's curve).
        losses: the loss at each time; NaN never reaches the target.
        target: the loss to reach.
    Returns:
        The first such time, or None when the curve never gets there.
    """
    for t, loss in zip(times, losses, strict=True):
        if loss is not None and math.isfinite(loss) and loss <= target:
            return float(t)
    return None
