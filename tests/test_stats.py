"""negation_encoder.stats: the one bootstrap, against hand computations and a naive reference."""

from __future__ import annotations

import numpy as np
import pytest

from negation_encoder.stats import bootstrap_mean, paired_bootstrap, paired_difference


def test_bootstrap_over_units_matches_hand_computed_quantiles():
    # two prompts, means 1 and 0: a resample of two prompts has mean 0 (1/4), 0.5 (1/2) or 1 (1/4),
    # so the 2.5% and 97.5% percentiles are 0 and 1 and the point estimate is 0.5
    ci = bootstrap_mean({"a": [1, 1], "b": [0, 0]}, resamples=4000, seed=3)
    assert (ci.mean, ci.low, ci.high, ci.n) == (0.5, 0.0, 1.0, 2)
    # identical prompts: every resample has the same mean
    flat = bootstrap_mean({"a": [1, 0], "b": [0, 1], "c": [1, 0]}, resamples=500)
    assert (flat.mean, flat.low, flat.high) == (0.5, 0.5, 0.5)


def test_bootstrap_is_seeded_and_order_free():
    a = bootstrap_mean({"p1": [1, 0, 1], "p2": [0, 0, 1], "p3": [1, 1, 1]}, seed=7)
    b = bootstrap_mean({"p3": [1, 1, 1], "p1": [1, 0, 1], "p2": [0, 0, 1]}, seed=7)
    assert a == b
    assert a.mean == pytest.approx(6 / 9)
    assert bootstrap_mean({"p1": [1, 0, 1], "p2": [0, 0, 1], "p3": [1, 1, 1]}, seed=8) != a


def test_paired_difference_uses_common_pairs_only():
    a = {("p1", 0): 0, ("p1", 1): 1, ("p2", 0): 0, ("p3", 0): 1}
    b = {("p1", 0): 1, ("p1", 1): 1, ("p2", 0): 1}
    d = paired_difference(a, b, resamples=200)
    assert d.mean == pytest.approx(2 / 3)  # (+1, 0, +1) over the three shared pairs
    assert d.n == 2


def test_paired_bootstrap_equals_the_per_sample_resampling_written_out():
    a = np.linspace(0, 1, 50)
    b = a + 0.1 + np.random.default_rng(0).normal(0, 0.01, 50)
    d = paired_bootstrap(a, b, 500, seed=4)
    # the reference: resample the 50 per-sample differences with replacement, 500 times
    diff = b - a
    idx = np.random.default_rng(4).integers(0, 50, size=(500, 50))
    lo, hi = np.quantile(diff[idx].mean(axis=1), [0.025, 0.975])
    assert d.mean == pytest.approx(diff.mean(), abs=1e-12)
    assert (d.low, d.high) == pytest.approx((lo, hi), abs=1e-12)
    assert d.low < d.mean < d.high and d.low > 0.09 and d.high < 0.11
    assert paired_bootstrap(a, b, 500, seed=5) != d
    with pytest.raises(ValueError, match="align"):
        paired_bootstrap([1.0], [1.0, 2.0])
