"""kanlab.report.stats against closed forms and scipy.stats on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from kanlab.report.stats import geometric_summary, paired_ratio, scaling_fit, summarize, time_to_target


def test_summary_matches_the_t_interval() -> None:
    x = [1.0, 2.0, 4.0, 7.0]
    s = summarize(x)
    assert s.n == 4 and s.mean == pytest.approx(3.5)
    assert s.std == pytest.approx(math.sqrt(sum((v - 3.5) ** 2 for v in x) / 3))
    low, high = sps.t.interval(0.95, 3, loc=3.5, scale=sps.sem(x))
    assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))
    narrow = summarize(x, confidence=0.5)
    assert s.low < narrow.low < narrow.high < s.high


def test_summary_of_one_value_has_no_spread_and_none_is_an_error() -> None:
    s = summarize([0.25])
    assert s.n == 1 and s.mean == 0.25 and all(math.isnan(v) for v in (s.std, s.low, s.high))
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_paired_ratio_is_a_paired_t_test_on_log_losses() -> None:
    a = np.array([0.010, 0.020, 0.012, 0.018, 0.011])
    b = np.array([0.030, 0.035, 0.041, 0.029, 0.050])
    p = paired_ratio(a, b)
    d = np.log(a) - np.log(b)
    assert p.n == 5 and p.ratio == pytest.approx(math.exp(d.mean()))
    assert p.p_value == pytest.approx(sps.ttest_rel(np.log(a), np.log(b)).pvalue)
    low, high = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    assert (p.low, p.high) == (pytest.approx(math.exp(low)), pytest.approx(math.exp(high)))
    assert p.high < 1 and p.winner == "a"
    assert paired_ratio(b, a).winner == "b" and paired_ratio(b, a).ratio == pytest.approx(1 / p.ratio)


def test_bootstrap_interval_agrees_with_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    a = np.exp(rng.normal(0.0, 0.3, size=12))
    b = np.exp(rng.normal(0.2, 0.3, size=12))
    p = paired_ratio(a, b, n_boot=20_000)
    d = np.log(a) - np.log(b)
    ref = sps.bootstrap((d,), np.mean, n_resamples=20_000, method="percentile", rng=np.random.default_rng(7))
    ci = ref.confidence_interval
    assert p.boot_low == pytest.approx(math.exp(ci.low), rel=0.02)
    assert p.boot_high == pytest.approx(math.exp(ci.high), rel=0.02)
    again = paired_ratio(a, b, n_boot=20_000)
    assert (again.boot_low, again.boot_high) == (p.boot_low, p.boot_high)
    assert p.boot_low < p.ratio < p.boot_high


def test_paired_ratio_edge_cases() -> None:
    same = paired_ratio([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.ratio == 1.0 and same.p_value == 1.0 and same.winner is None
    halved = paired_ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # every pair exactly 2x: no spread
    assert halved.ratio == pytest.approx(0.5) and halved.low == halved.high == pytest.approx(0.5)
    assert halved.p_value == 0.0 and halved.winner == "a"
    one = paired_ratio([1.0], [4.0])
    assert one.ratio == 0.25 and math.isnan(one.p_value) and one.winner is None
    with pytest.raises(ValueError, match="> 0"):
        paired_ratio([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="equally long"):
        paired_ratio([1.0, 2.0], [1.0])


def test_scaling_fit_recovers_an_exact_power_law() -> None:
    params = np.array([300.0, 1000.0, 3000.0, 10000.0])
    fit = scaling_fit(params, 5.0 * params**-1.5)
    assert fit.exponent == pytest.approx(1.5) and fit.coefficient == pytest.approx(5.0)
    assert fit.stderr == pytest.approx(0.0, abs=1e-9) and fit.n == 4
    np.testing.assert_allclose(fit.predict([2000.0]), 5.0 * 2000.0**-1.5)


def test_scaling_fit_matches_linregress_on_noisy_points() -> None:
    params = [300, 300, 1000, 1000, 3000, 3000]
    losses = [0.1, 0.14, 0.05, 0.04, 0.011, 0.016]
    fit = scaling_fit(params, losses)
    ref = sps.linregress(np.log(params), np.log(losses))
    assert fit.exponent == pytest.approx(-ref.slope) and fit.stderr == pytest.approx(ref.stderr)
    assert fit.coefficient == pytest.approx(math.exp(ref.intercept))
    assert math.isnan(scaling_fit([10, 100], [1.0, 0.1]).stderr)
    with pytest.raises(ValueError, match="two distinct"):
        scaling_fit([10, 10], [1.0, 0.5])


def test_time_to_target_is_the_first_time_at_or_below() -> None:
    times, losses = [0.0, 1.5, 3.0, 4.5], [1.0, float("nan"), 0.2, 0.1]
    assert time_to_target(times, losses, 0.2) == 3.0
    assert time_to_target(times, losses, 5.0) == 0.0
    assert time_to_target(times, losses, 0.01) is None


def test_geometric_summary_is_the_t_interval_of_log_values_mapped_back() -> None:
    x = [1e-3, 1e-2, 1e-1]
    g = geometric_summary(x)
    assert g.mean == pytest.approx(1e-2) and g.std == pytest.approx(math.log(10))
    half = sps.t.ppf(0.975, 2) * math.log(10) / math.sqrt(3)
    assert (g.low, g.high) == (pytest.approx(1e-2 * math.exp(-half)), pytest.approx(1e-2 * math.exp(half)))
    assert summarize(x).low < 0 < g.low          # the plain interval of three seeds reaches below zero
    with pytest.raises(ValueError, match="all > 0"):
        geometric_summary([1.0, 0.0])
