"""The statistics of `vidd bench`: bootstrap intervals across seeds and areas under learning curves.

A cell of a benchmark table is the mean over seeds of each seed's median (the run's metric), with a
percentile bootstrap interval over the seeds. A learning curve (held-out reward at each evaluation
against the training-reward calls or the training seconds) is summarised by its area over a log-scaled
range, normalised by the range's width: the curve's mean height per decade, in the reward's own units.
Comparisons of two methods pair their runs by seed.
"""

from __future__ import annotations

import numpy as np


def _resampled(values: np.ndarray, rng, draws: int, statistic) -> np.ndarray:
    """`statistic` of each of `draws` resamples (with replacement) of `values`."""
    return statistic(values[rng.integers(0, len(values), size=(draws, len(values)))], axis=1)


def _ends(estimates: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(estimates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_interval(values, level: float = 0.95, draws: int = 10_000, seed: int = 0,
                       statistic=np.mean) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` (default the mean; e.g. np.median) of `values` and its percentile
    bootstrap interval (resampling the values); low = high = nan for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    estimate = float(statistic(values))
    if len(values) < 2:
        return estimate, float("nan"), float("nan")
    return estimate, *_ends(_resampled(values, np.random.default_rng(seed), draws, statistic), level)


def difference_interval(a, b, level: float = 0.95, draws: int = 10_000, seed: int = 0,
                        statistic=np.median) -> tuple[float, float, float]:
    """(statistic(a) - statistic(b), low, high) for two unpaired samples (e.g. two methods' molecules), with the
    percentile bootstrap interval of resampling each; low = high = nan when either has fewer than two values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    estimate = float(statistic(a) - statistic(b))
    if len(a) < 2 or len(b) < 2:
        return estimate, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    return estimate, *_ends(_resampled(a, rng, draws, statistic) - _resampled(b, rng, draws, statistic), level)


def log_area(x, y, low: float, high: float, grid: int = 512) -> float:
    """The mean of y over log(x) from `low` to `high`: the area under the curve against log x divided by
    log(high / low). y is interpolated linearly in log x between the points and held at the first (last)
    point's value before (after) them. Points with x <= 0 are ignored; nan without points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = (x > 0) & np.isfinite(y)
    if not keep.any() or not 0 < low < high:
        return float("nan")
    order = np.argsort(x[keep])
    log_x, y = np.log(x[keep][order]), y[keep][order]
    grid_x = np.linspace(np.log(low), np.log(high), grid)
    return float(np.trapezoid(np.interp(grid_x, log_x, y), grid_x) / (grid_x[-1] - grid_x[0]))


def comparison_range(curves: list[tuple[list, list]]) -> tuple[float, float]:
    """The x range over which curves of one budget are compared: from the latest first point (every curve has
    begun) to the latest last point (a curve that ended earlier, its budget spent, holds its last value)."""
    xs = [[v for v in x if v > 0] for x, _ in curves]
    xs = [x for x in xs if x]
    return (max(min(x) for x in xs), max(max(x) for x in xs)) if xs else (float("nan"), float("nan"))


def paired_difference(a: dict, b: dict, **bootstrap) -> dict:
    """a[seed] - b[seed] over the seeds both have: {"seeds", "mean", "low", "high"} (bootstrap over the seeds)."""
    seeds = sorted(s for s in set(a) & set(b) if np.isfinite(a[s]) and np.isfinite(b[s]))
    mean, low, high = bootstrap_interval([a[s] - b[s] for s in seeds], **bootstrap)
    return {"seeds": seeds, "mean": mean, "low": low, "high": high}
