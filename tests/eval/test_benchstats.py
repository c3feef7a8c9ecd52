"""The statistics of `vidd bench`: areas under learning curves on a log axis and bootstrap intervals."""

import math

import numpy as np
import pytest

from vidd.eval.benchstats import (
    bootstrap_interval,
    comparison_range,
    difference_interval,
    log_area,
    paired_difference,
)


def test_log_area_is_the_mean_height_over_log_x():
    x = np.array([100.0, 1000.0, 10000.0])
    assert log_area(x, [2.0, 2.0, 2.0], 100, 10000) == pytest.approx(2.0)
    # y linear in log x: the mean over [log a, log b] is the value at the midpoint
    y = np.log10(x)
    assert log_area(x, y, 100, 10000) == pytest.approx(3.0, rel=1e-6)
    assert log_area(x, y, 100, 1000) == pytest.approx(2.5, rel=1e-6)
    # held constant beyond the points, ignoring x <= 0 and the order of the points
    assert log_area([0.0, 5000.0, 1000.0], [9.0, 1.0, 1.0], 10, 100000) == pytest.approx(1.0)
    assert math.isnan(log_area([], [], 1, 10)) and math.isnan(log_area([1.0], [1.0], 10, 10))


def test_bootstrap_interval_of_seed_medians():
    mean, low, high = bootstrap_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= low < 2.5 < high <= 4.0
    assert bootstrap_interval([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    single = bootstrap_interval([3.0])
    assert single[0] == 3.0 and math.isnan(single[1]) and math.isnan(single[2])
    assert bootstrap_interval([1.0, 9.0], seed=1) == bootstrap_interval([1.0, 9.0], seed=1)


def test_bootstrap_interval_of_a_median():
    """Every resample of [1, 2, 9] has median 1, 2 or 9; 1 and 9 each need two of its three draws (7/27), so the
    2.5% and 97.5% quantiles are exactly 1 and 9."""
    median, low, high = bootstrap_interval([1.0, 2.0, 9.0], statistic=np.median)
    assert (median, low, high) == (2.0, 1.0, 9.0)
    assert bootstrap_interval([4.0, 4.0, 4.0, 4.0], statistic=np.median) == (4.0, 4.0, 4.0)


def test_difference_interval_of_two_medians():
    """As above, each median resamples to its extremes with probability 7/27, so both extremes of the difference
    (1 - 7.5 and 9 - 4) have probability 49/729 > 2.5%: they are the interval's ends."""
    assert difference_interval([1.0, 2.0, 9.0], [4.0, 5.0, 7.5]) == (-3.0, -6.5, 5.0)
    assert difference_interval([3.0, 3.0], [1.0, 1.0, 1.0]) == (2.0, 2.0, 2.0)
    single = difference_interval([3.0], [1.0, 2.0])
    assert single[0] == 1.5 and math.isnan(single[1]) and math.isnan(single[2])
    assert all(math.isnan(v) for v in difference_interval([], [1.0, 2.0]))


def test_paired_difference_uses_the_seeds_both_have():
    diff = paired_difference({0: 3.0, 1: 5.0, 2: 1.0, 3: float("nan")}, {0: 1.0, 1: 2.0, 3: 0.0})
    assert diff["seeds"] == [0, 1] and diff["mean"] == pytest.approx(2.5)
    assert diff["low"] >= 2.0 and diff["high"] <= 3.0


def test_comparison_range_starts_when_every_curve_has_begun():
    assert comparison_range([([1.0, 5.0, 9.0], []), ([0.0, 2.0, 7.0], [])]) == (2.0, 9.0)
    assert comparison_range([([1.0, 2.0], []), ([5.0, 8.0], [])]) == (5.0, 8.0)  # the first held at its end
