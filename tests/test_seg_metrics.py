"""eval_seg metrics against hand counts and a naive per-threshold reference (CLIPSeg's rule, written out)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval_seg import (
    THRESHOLDS,
    FixedIntervalMetrics,
    counts_from_histograms,
    probability_histograms,
    simpson,
)

T_PY = np.linspace(0, 1, 51)[1:-1].tolist()  # CLIPSeg's thresholds, as Python floats


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _naive(logits, masks, classes=None):
    """Straight from the definition: loop over thresholds, `p > t` with torch's float32 comparison."""
    summed = {k: np.zeros(49) for k in ("tp", "fp", "fn", "tn")}
    by_class: dict = {}
    for i, (lg, m) in enumerate(zip(logits, masks, strict=True)):
        p = torch.sigmoid(lg.float())
        p = F.interpolate(p[None, None], size=m.shape, mode="bilinear", align_corners=True)[0, 0]
        g = m.bool()
        c = by_class.setdefault(i if classes is None else classes[i], {k: np.zeros(49) for k in summed})
        for j, t in enumerate(T_PY):
            pos = p > t
            vals = {"tp": (pos & g).sum(), "fp": (pos & ~g).sum(), "fn": (~pos & g).sum(), "tn": (~pos & ~g).sum()}
            for k, v in vals.items():
                summed[k][j] += int(v)
                c[k][j] += int(v)
    fg = summed["tp"] / (1 + summed["tp"] + summed["fp"] + summed["fn"])
    tn = summed["tn"] / (1 + summed["tn"] + summed["fn"] + summed["fp"])
    miou = np.mean([c["tp"] / (1 + c["tp"] + c["fp"] + c["fn"]) for c in by_class.values()], axis=0)
    made = summed["tp"] + summed["fp"] > 0
    prec = (summed["tp"] / (1 + summed["tp"] + summed["fp"]))[made]
    rec = (summed["tp"] / (1 + summed["tp"] + summed["fn"]))[made]
    best: dict = {}  # CLIPSeg's distinct (recall, precision) pairs; a shared recall keeps its top precision
    for r, p in zip(rec.tolist(), prec.tolist(), strict=True):
        best[r] = max(p, best.get(r, -1.0))
    ap = simpson([best[r] for r in sorted(best)], sorted(best))
    return summed, fg, 0.5 * fg + 0.5 * tn, miou, ap


def test_thresholds_are_clipseg_grid():
    assert len(THRESHOLDS) == 49
    assert THRESHOLDS.tolist() == torch.tensor(T_PY, dtype=torch.float32).tolist()


def test_hand_counted_tiny_example():
    # probabilities 0.9 0.25 / 0.05 0.5 (0.5 sits exactly on a threshold), ground truth top row
    probs = torch.tensor([[0.9, 0.25], [0.05, 0.5]])
    mask = torch.tensor([[1, 1], [0, 0]])
    c = counts_from_histograms(probability_histograms([probs], [mask])[0])
    j = {t: T_PY.index(t) for t in (0.1, 0.3, 0.5)}
    got = {t: tuple(int(c[k][j[t]]) for k in ("tp", "fp", "fn", "tn")) for t in j}
    assert got == {0.1: (2, 1, 0, 1), 0.3: (1, 1, 1, 1), 0.5: (1, 0, 1, 2)}, got

    logits = torch.tensor([[_logit(0.9), _logit(0.25)], [_logit(0.05), _logit(0.6)]])
    m = FixedIntervalMetrics(per_sample_classes=True)
    m.update(logits[None], [mask])
    out = m.compute()
    assert out["fgiou_0.3"] == pytest.approx(1 / 4)  # TP 1 / (1 + 1 + 1 + 1)
    assert out["iou_bin_0.3"] == pytest.approx(0.5 / 4 + 0.5 * 1 / 4)
    assert out["fgiou_0.1"] == pytest.approx(2 / 4)
    assert out["iou_bin_0.1"] == pytest.approx(0.5 * 2 / 4 + 0.5 * 1 / 3)
    assert out["miou_0.3"] == pytest.approx(out["fgiou_0.3"])  # one sample: its own class


def test_values_exactly_on_thresholds_count_as_negative():
    t = THRESHOLDS
    below = torch.nextafter(t, torch.zeros_like(t))
    above = torch.nextafter(t, torch.ones_like(t))
    probs = torch.cat([t, below, above, torch.tensor([0.0, 1.0])]).reshape(1, -1)
    mask = torch.ones_like(probs, dtype=torch.long)
    c = counts_from_histograms(probability_histograms([probs], [mask])[0])
    for j, tj in enumerate(T_PY):
        expect = int((probs > tj).sum())  # torch's own float32 comparison
        assert int(c["tp"][j]) == expect, f"threshold {tj}: histogram {int(c['tp'][j])} vs direct {expect}"
        assert int(c["fn"][j]) == probs.numel() - expect


def test_logits_landing_on_thresholds_match_naive():
    # float32 logits whose sigmoid is exactly a threshold, where such a logit exists
    hits = []
    for tj in THRESHOLDS:
        x = torch.tensor(_logit(float(tj)), dtype=torch.float32)
        for _ in range(64):
            s = torch.sigmoid(x)
            if s == tj:
                hits.append(float(x))
                break
            x = torch.nextafter(x, torch.tensor(math.inf) if s < tj else torch.tensor(-math.inf))
    assert len(hits) >= 10, "expected to find logits with sigmoid exactly on a threshold"
    logits = torch.tensor(hits + [h + 1e-3 for h in hits]).reshape(1, 2, -1)
    masks = [torch.tensor([[1] * len(hits), [0] * len(hits)])]
    m = FixedIntervalMetrics()
    hist = m.update(logits, masks)
    summed, *_ = _naive(list(logits), masks)
    c = counts_from_histograms(hist.sum(0))
    for k in ("tp", "fp", "fn", "tn"):
        assert c[k].tolist() == summed[k].astype(int).tolist(), k


@pytest.mark.parametrize("seed", [0, 1])
def test_random_batches_agree_with_naive_reference(seed):
    g = torch.Generator().manual_seed(seed)
    logits, masks, classes = [], [], []
    for i in range(7):
        h, w = int(torch.randint(9, 30, (1,), generator=g)), int(torch.randint(9, 30, (1,), generator=g))
        logits.append(torch.randn(12, 12, generator=g) * 2)
        masks.append((torch.rand(h, w, generator=g) < 0.3).long())
        classes.append(i % 3)
    summed, fg, biou, miou_sample, ap = _naive(logits, masks)
    _, _, _, miou_class, _ = _naive(logits, masks, classes)

    per_sample = FixedIntervalMetrics(per_sample_classes=True)
    per_class = FixedIntervalMetrics()
    for lo in (0, 3, 5):  # uneven batches
        hi = {0: 3, 3: 5, 5: 7}[lo]
        per_sample.update(torch.stack(logits[lo:hi]), masks[lo:hi])
        per_class.update(torch.stack(logits[lo:hi]), masks[lo:hi], class_ids=classes[lo:hi])
    a, b = per_sample.compute(), per_class.compute()
    c = counts_from_histograms(per_sample.total)
    for k in ("tp", "fp", "fn", "tn"):
        assert c[k].tolist() == summed[k].astype(int).tolist(), f"{k} differs from the naive loop"
    for t in (0.1, 0.2, 0.3, 0.5):
        j = T_PY.index(t)
        assert a[f"fgiou_{t}"] == pytest.approx(fg[j], abs=1e-12)
        assert a[f"iou_bin_{t}"] == pytest.approx(biou[j], abs=1e-12)
        assert a[f"miou_{t}"] == pytest.approx(miou_sample[j], abs=1e-12)
        assert b[f"miou_{t}"] == pytest.approx(miou_class[j], abs=1e-12)
    assert a["fgiou_best"] == pytest.approx(fg.max()) and a["fgiou_best_t"] == T_PY[int(fg.argmax())]
    assert a["miou_best"] == pytest.approx(miou_sample.max()) and a["miou_best_t"] == T_PY[int(miou_sample.argmax())]
    assert a["iou_bin_best"] == pytest.approx(biou.max())
    assert a["ap"] == pytest.approx(ap, abs=1e-12)
    assert a["n_samples"] == 7 and b["n_classes"] == 3


def test_no_classes_gives_no_miou_and_histograms_resume_exactly():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 8, 8, generator=g)
    masks = [(torch.rand(10, 10, generator=g) < 0.5).long() for _ in range(4)]
    m = FixedIntervalMetrics()
    hist = m.update(logits, masks)
    assert m.compute()["miou_0.3"] is None
    full = FixedIntervalMetrics(per_sample_classes=True)
    full.update(logits, masks)
    rebuilt = FixedIntervalMetrics(per_sample_classes=True)
    for h in hist:  # one saved histogram at a time, as a resumed run reads them back
        rebuilt.update_histograms(h)
    assert rebuilt.compute() == full.compute()


@pytest.mark.parametrize("n", [3, 4, 7, 8])
def test_simpson_is_exact_for_quadratics_on_irregular_grids(n):
    x = np.sort(np.random.default_rng(n).uniform(0, 1, n))
    y = 3 * x**2 - 2 * x + 0.5
    exact = (x[-1] ** 3 - x[0] ** 3) - (x[-1] ** 2 - x[0] ** 2) + 0.5 * (x[-1] - x[0])
    assert simpson(y, x) == pytest.approx(exact, rel=1e-10)


def test_fast_cpu_binning_equals_binary_search():
    from eval_seg.metrics import threshold_bins

    t = THRESHOLDS
    g = torch.Generator().manual_seed(7)
    p = torch.cat([t, torch.nextafter(t, torch.zeros_like(t)), torch.nextafter(t, torch.ones_like(t)),
                   torch.tensor([0.0, 1.0, 1e-30, 0.99999994]), torch.rand(20000, generator=g)])
    got = torch.from_numpy(threshold_bins(p.numpy())).long()
    assert torch.equal(got, torch.bucketize(p, t)), "floor-and-correct binning differs from bucketize"
