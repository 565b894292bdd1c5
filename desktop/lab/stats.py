"""Bootstrap intervals: how sure a measured accuracy, or a difference between two arms, is.

Paired: both arms answered the same questions, so questions are resampled together and each
resample's difference is taken question by question. Percentile intervals, seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
_BATCH_CELLS = 2_000_000  # resamples × questions per batch, to bound memory on large sets


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% bootstrap interval [low, high]."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def contains_zero(self) -> bool:
        """No measurable difference: 0 lies inside the interval."""
        return self.low <= 0.0 <= self.high

    def points(self) -> str:
        """As percentage points, e.g. "+14 points [8, 20]"."""
        return (f"{100 * self.estimate:+.0f} points [{100 * self.low:.0f}, {100 * self.high:.0f}]"
                .replace("-", "−"))

    def percent(self) -> str:
        """As a percentage, e.g. "18% [12, 24]"."""
        return f"{100 * self.estimate:.0f}% [{100 * self.low:.0f}, {100 * self.high:.0f}]"


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    per_batch = max(1, _BATCH_CELLS // n)
    means = []
    for start in range(0, resamples, per_batch):
        size = min(per_batch, resamples - start)
        means.append(values[rng.integers(0, n, size=(size, n))].mean(axis=1))
    return np.concatenate(means)


def _interval(values: np.ndarray, resamples: int, seed: int) -> Interval | None:
    if len(values) == 0:
        return None
    means = _resampled_means(values, resamples, seed)
    low, high = np.percentile(means, [2.5, 97.5])
    # Rounding: a difference of exactly zero everywhere must read as containing zero.
    return Interval(float(values.mean()), _tidy(low), _tidy(high), len(values))


def _tidy(x: float) -> float:
    value = float(x)
    return 0.0 if math.isclose(value, 0.0, abs_tol=1e-12) else value


def bootstrap_mean(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> Interval | None:
    """The mean of ``values`` (e.g. 1 = correct, 0 = not) with its 95% interval; None if empty."""
    return _interval(np.asarray(values, dtype=float), resamples, seed)


def bootstrap_difference(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES,
                         seed: int = 0) -> Interval | None:
    """mean(a) − mean(b) over paired values (the same questions, in the same order).

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return _interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), resamples, seed)
