"""Bootstrap intervals and paired differences: the one statistics module every evaluation reports with.

Resampling unit: whatever is independent. Neg Score resamples prompts (the seeds of one prompt share
its wording, so they are not independent draws: a cluster bootstrap keeps that correlation inside each
resample); segmentation resamples referring expressions. A paired difference resamples the same units
in both arms, which removes the units' own difficulty from the comparison. Seeded: the same inputs give
the same interval, in whatever order they were written (units are taken in sorted order).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int  # bootstrap units (prompts, samples)
    resamples: int = 0
    seed: int = 0

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.low, self.high], "n": self.n}


def bootstrap_mean(values_by_unit: Mapping[Hashable, Sequence[float]], resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> Interval:
    """Mean over all values, and a percentile interval from resampling units with replacement.

    Each resample draws as many units as there are, concatenates their values and takes the mean, so a
    unit with more values weighs more, as it does in the point estimate.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    units = [np.asarray(values_by_unit[k], dtype=float) for k in sorted(values_by_unit) if len(values_by_unit[k])]
    if not units:
        raise ValueError("bootstrap needs at least one unit with at least one value")
    sums = np.array([u.sum() for u in units])
    counts = np.array([len(u) for u in units], dtype=float)
    point = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(units), size=(resamples, len(units)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), len(units), resamples, seed)


def paired_difference(scores_a: Mapping[tuple, float], scores_b: Mapping[tuple, float], resamples: int = 2000,
                      seed: int = 0, level: float = 0.95) -> Interval:
    """b minus a over the keys both score; keys are (unit, replicate) tuples, e.g. (prompt, seed), and
    the bootstrap resamples units."""
    common = sorted(set(scores_a) & set(scores_b))
    if not common:
        raise ValueError("the two arms share no (unit, replicate) pair to compare")
    by_unit: dict = {}
    for key in common:
        by_unit.setdefault(key[0], []).append(float(scores_b[key]) - float(scores_a[key]))
    return bootstrap_mean(by_unit, resamples=resamples, seed=seed, level=level)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> Interval:
    """Mean of b[i] - a[i] over aligned samples, each sample its own unit."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must align: {len(a)} vs {len(b)}")
    if len(a) == 0:
        raise ValueError("no paired samples to compare")
    width = len(str(len(a)))
    return bootstrap_mean({f"{i:0{width}d}": [float(y) - float(x)] for i, (x, y) in enumerate(zip(a, b, strict=True))},
                          resamples=resamples, seed=seed, level=level)
