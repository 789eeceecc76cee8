"""CLIPSeg's fixed-interval metrics (fgIoU, IoU_BIN, mIoU, AP), streaming and vectorised.

The rule is docs/design.md's "mIoU / IoU_BIN": sigmoid probabilities resized to the mask (bilinear,
align_corners=True); 49 thresholds 0.02 .. 0.98; a pixel is positive if pred > t; TP/FP/FN/TN summed
over the dataset per threshold (per class for mIoU); fgIoU = TP/(1+TP+FP+FN);
IoU_BIN = 1/2 fgIoU + 1/2 TN/(1+TN+FN+FP).

Why a histogram: CLIPSeg sorts every prediction and keeps 4 x 49 counts per sample. Here each pixel
is put into one of 50 bins (how many thresholds lie strictly below its probability) and counted per
(class, ground truth) with one `bincount`. "pred > t_j" is then exactly "bin > j", so every count at
every threshold is a suffix or prefix sum of the histogram: one pass over the pixels, state of
2 x 50 integers per class, independent of how many thresholds are read off it.

Thresholds are float32, as in CLIPSeg, where torch compares the float32 probability tensor with a
Python float in float32: a probability equal to float32(0.3) is negative at 0.3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

N_BINS = 50
THRESHOLDS = torch.linspace(0, 1, N_BINS + 1, dtype=torch.float64)[1:-1].to(torch.float32)
"""The 49 thresholds 0.02, 0.04, ... 0.98 (CLIPSeg's `np.linspace(0, 1, 51)[1:-1]`), as float32."""
REPORT_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)


def threshold_index(t: float) -> int:
    """Index of threshold `t` among `THRESHOLDS` (0.3 -> 14); a value off the grid is an error."""
    j = int(round(t * N_BINS)) - 1
    if not 0 <= j < len(THRESHOLDS) or abs((j + 1) / N_BINS - t) > 1e-9:
        raise ValueError(f"threshold {t} is not one of the 49 fixed thresholds 0.02 .. 0.98")
    return j


def probabilities_at_mask_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) logits -> (H, W) float32 probabilities: sigmoid first, then bilinear with align_corners=True,
    the order CLIPSeg's `FixedIntervalMetrics(sigmoid=True, resize_pred=True)` uses."""
    p = torch.sigmoid(logits.detach().float())
    if tuple(p.shape[-2:]) != tuple(size):
        p = F.interpolate(p[None, None], size=tuple(size), mode="bilinear", align_corners=True)[0, 0]
    return p


def histograms_from_probabilities(probs: torch.Tensor | Sequence[torch.Tensor],
                                  masks: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Like `confusion_histograms`, from probabilities at prediction size (a route that combines several
    maps, e.g. CLIPSeg's split route, has no single logit): resized to each mask, then binned."""
    if len(probs) != len(masks):
        raise ValueError(f"got {len(probs)} predictions but {len(masks)} masks")
    return probability_histograms([histogram_ready(p, tuple(m.shape)) for p, m in zip(probs, masks, strict=True)],
                                  masks)


def histogram_ready(prob: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) probabilities -> (H, W) float32 at the mask's size (bilinear, align_corners=True)."""
    p = prob.detach().float()
    if tuple(p.shape[-2:]) != tuple(size):
        p = F.interpolate(p[None, None], size=tuple(size), mode="bilinear", align_corners=True)[0, 0]
    return p


def confusion_histograms(logits: torch.Tensor | Sequence[torch.Tensor],
                         masks: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample histograms (B, 2, 50) int64 from raw (B, h, w) logits at prediction size and ground
    truths at their own sizes (nonzero = foreground): see `probability_histograms`."""
    if len(logits) != len(masks):
        raise ValueError(f"got {len(logits)} predictions but {len(masks)} masks")
    for b, (lg, m) in enumerate(zip(logits, masks, strict=True)):
        if lg.dim() != 2 or m.dim() != 2:
            raise ValueError(f"sample {b}: expected 2-D logits and mask, got {tuple(lg.shape)} and {tuple(m.shape)}")
    probs = [probabilities_at_mask_size(lg, tuple(m.shape)) for lg, m in zip(logits, masks, strict=True)]
    return probability_histograms(probs, masks)


_T_PADDED = np.concatenate([[-np.inf], THRESHOLDS.numpy(), [np.inf]]).astype(np.float32)


def threshold_bins(p: np.ndarray) -> np.ndarray:
    """Number of thresholds strictly below each float32 probability, exactly (= `torch.bucketize`,
    right=False), in a few numpy passes: floor(50 p) is off by at most one next to a threshold, and
    one comparison with the threshold on each side corrects it. ~15x faster than a binary search."""
    c = (p * np.float32(N_BINS)).astype(np.int32)
    np.clip(c, 0, N_BINS - 1, out=c)
    return c - (p <= _T_PADDED[c]) + (p > _T_PADDED[c + 1])


def probability_histograms(probs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, 2, 50) int64: [b, g, k] = pixels of sample b with ground truth g whose probability has exactly
    k thresholds strictly below it, comparing in float32. CUDA: `bucketize` and one `bincount` for the
    batch. CPU: `threshold_bins` and numpy's `bincount` per sample (a tight C loop, ~30x torch's)."""
    if len(probs) != len(masks):
        raise ValueError(f"got {len(probs)} probability maps but {len(masks)} masks")
    out, keys = torch.zeros(len(probs), 2, N_BINS, dtype=torch.long), []
    for b, (p, m) in enumerate(zip(probs, masks, strict=True)):
        if p.shape != m.shape:
            raise ValueError(f"sample {b}: probabilities {tuple(p.shape)} and mask {tuple(m.shape)} differ in size")
        p = p.reshape(-1).float()
        if p.is_cuda:
            bins = torch.bucketize(p, THRESHOLDS.to(p.device))
            keys.append(bins + N_BINS * ((m.reshape(-1).to(p.device) != 0).long() + 2 * b))
        else:
            key = threshold_bins(p.numpy())
            key += N_BINS * (m.reshape(-1).cpu().numpy() != 0)
            out[b] = torch.from_numpy(np.bincount(key, minlength=2 * N_BINS).reshape(2, N_BINS))
    if keys:
        out = torch.bincount(torch.cat(keys), minlength=len(probs) * 2 * N_BINS).view(len(probs), 2, N_BINS).cpu()
    return out


def counts_from_histograms(hist: torch.Tensor) -> dict[str, torch.Tensor]:
    """(..., 2, 50) histograms -> TP/FP/FN/TN of shape (..., 49): positives at threshold j are bins > j."""
    hist = hist.long()
    above = hist.flip(-1).cumsum(-1).flip(-1)[..., 1:]  # [.., j] = sum of bins j+1 .. 49
    total = hist.sum(-1, keepdim=True)
    tp, fp = above[..., 1, :], above[..., 0, :]
    fn, tn = total[..., 1, :] - tp, total[..., 0, :] - fp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def fg_iou(c: dict[str, torch.Tensor]) -> torch.Tensor:
    tp, fp, fn = (c[k].double() for k in ("tp", "fp", "fn"))
    return tp / (1 + tp + fp + fn)


def bin_iou(c: dict[str, torch.Tensor]) -> torch.Tensor:
    tn, fp, fn = (c[k].double() for k in ("tn", "fp", "fn"))
    return 0.5 * fg_iou(c) + 0.5 * tn / (1 + tn + fn + fp)


def simpson(y: Sequence[float], x: Sequence[float]) -> float:
    """Composite Simpson's rule on an irregular grid (scipy.integrate.simpson, scipy >= 1.11): pairs of
    intervals get the exact parabola through three points; with an even number of points the last
    interval gets Cartwright's correction. Both are exact for quadratics; 2 points are a trapezoid."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 2:
        return 0.0
    if n == 2:
        return float((x[1] - x[0]) * (y[0] + y[1]) / 2)
    h = np.diff(x)
    odd = n if n % 2 == 1 else n - 1
    h0, h1 = h[0:odd - 1:2], h[1:odd - 1:2]
    y0, y1, y2 = y[0:odd - 2:2], y[1:odd - 1:2], y[2:odd:2]
    hs = h0 + h1
    total = float(np.sum(hs / 6 * (y0 * (2 - h1 / h0) + y1 * hs * hs / (h0 * h1) + y2 * (2 - h0 / h1))))
    if n % 2 == 0:
        a, b = h[-2], h[-1]
        alpha = (2 * b * b + 3 * a * b) / (6 * (a + b))
        beta = (b * b + 3 * a * b) / (6 * a)
        eta = b ** 3 / (6 * a * (a + b))
        total += float(alpha * y[-1] + beta * y[-2] - eta * y[-3])
    return total


def average_precision(c: dict[str, torch.Tensor]) -> float:
    """CLIPSeg's AP: smoothed precision TP/(1+TP+FP) and recall TP/(1+TP+FN) at the thresholds where
    anything is predicted, distinct pairs sorted by recall, integrated with Simpson's rule.

    Pairs that share a recall keep their highest precision: CLIPSeg's scipy call would divide by a
    zero-width interval there and return nan, and those pairs only arise when a threshold step removes
    false positives alone.
    """
    tp, fp, fn = (c[k].double() for k in ("tp", "fp", "fn"))
    made = (tp + fp) > 0
    prec = (tp / (1 + tp + fp))[made].tolist()
    rec = (tp / (1 + tp + fn))[made].tolist()
    best: dict[float, float] = {}
    for r, p in zip(rec, prec, strict=True):
        best[r] = max(p, best.get(r, -1.0))
    if not best:
        return 0.0
    rs = sorted(best)
    return simpson([best[r] for r in rs], rs)


class FixedIntervalMetrics:
    """Streaming CLIPSeg metrics. `update()` per batch, `compute()` at the end.

    `per_sample_classes=True` makes every sample its own class, so mIoU is the mean of per-sample IoUs
    (what CLIPSeg does on PhraseCut and what referring expressions call for). Otherwise mIoU is taken
    over the `class_ids` given to `update()`; with none given the `miou_*` values are None.
    State: one (2, 50) histogram per class plus the dataset total, never the pixels.
    """

    def __init__(self, per_sample_classes: bool = False):
        self.per_sample_classes = per_sample_classes
        self.total = torch.zeros(2, N_BINS, dtype=torch.long)
        self.by_class: dict[int | str, torch.Tensor] = {}
        self.n_samples = 0

    def update(self, logits, masks, class_ids: Sequence[int | str] | None = None) -> torch.Tensor:
        """Add a batch; returns its per-sample histograms (B, 2, 50) so callers can persist them."""
        hist = confusion_histograms(logits, masks)
        self.update_histograms(hist, class_ids)
        return hist

    def update_histograms(self, hist: torch.Tensor, class_ids: Sequence[int | str] | None = None) -> None:
        """Add per-sample histograms saved earlier (resume): the same state as `update()` on the pixels."""
        hist = torch.as_tensor(hist, dtype=torch.long).reshape(-1, 2, N_BINS)
        if class_ids is not None and len(class_ids) != len(hist):
            raise ValueError(f"got {len(class_ids)} class ids for {len(hist)} samples")
        self.total += hist.sum(0)
        if self.per_sample_classes:
            class_ids = [f"sample{self.n_samples + i}" for i in range(len(hist))]
        if class_ids is not None:
            for c, h in zip(class_ids, hist, strict=True):
                key = c if isinstance(c, str) else int(c)
                self.by_class[key] = self.by_class.get(key, torch.zeros_like(h)) + h
        self.n_samples += len(hist)

    def compute(self) -> dict:
        """Flat dict: fgiou_/iou_bin_/miou_ at 0.1/0.2/0.3/0.5 and `_best` (with `_best_t`), `ap`, `n_samples`."""
        c = counts_from_histograms(self.total)
        curves = {"fgiou": fg_iou(c), "iou_bin": bin_iou(c)}
        if self.by_class:
            per_class = counts_from_histograms(torch.stack(list(self.by_class.values())))
            curves["miou"] = fg_iou(per_class).mean(0)
        out: dict = {"n_samples": self.n_samples, "n_classes": len(self.by_class)}
        for name in ("fgiou", "iou_bin", "miou"):
            curve = curves.get(name)
            for t in REPORT_THRESHOLDS:
                out[f"{name}_{t}"] = None if curve is None else float(curve[threshold_index(t)])
            if curve is None:
                out[f"{name}_best"], out[f"{name}_best_t"] = None, None
            else:
                j = int(torch.argmax(curve))  # first maximum, as np.argmax in CLIPSeg
                out[f"{name}_best"], out[f"{name}_best_t"] = float(curve[j]), round((j + 1) / N_BINS, 2)
        out["ap"] = average_precision(c)
        return out


def sample_iou(hist: torch.Tensor, t: float = 0.3) -> torch.Tensor:
    """Per-sample fgIoU (with the +1 smoothing) at threshold `t` from (N, 2, 50) histograms."""
    return fg_iou(counts_from_histograms(torch.as_tensor(hist).reshape(-1, 2, N_BINS)))[:, threshold_index(t)]
