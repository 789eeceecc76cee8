"""Tensor functions several loss terms share (each term's own loss lives in its module under `terms/`).

Pure functions of tensors, in the shape of open_clip's `loss.py`: none owns a model or a tokenizer.
"""

from __future__ import annotations

import torch


def multi_positive_ce(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -log(sum_pos softmax(logits)). `positive`/`valid` are boolean like `logits`."""
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    log_all = torch.logsumexp(logits, dim=-1)
    log_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=-1)
    return (log_all - log_pos).mean()


def nan_to_zero(x: torch.Tensor) -> torch.Tensor:
    """The mean over zero rows is NaN; such a term contributes nothing."""
    return torch.nan_to_num(x, nan=0.0)


def cosine_distance(x: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cosine between unit vectors `x` and fixed unit `target` over the rows in `rows` (B,);
    0 if there are none."""
    if not rows.any():
        return x.new_zeros(())
    return (1.0 - (x[rows] * target[rows]).sum(-1)).mean()


def state_mse(pred: torch.Tensor, target: torch.Tensor, rows: torch.Tensor,
              positions: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of token states `pred` against `target` (R, L, D) over the rows in `rows` (R,),
    every position and dimension, or only the `positions` (R, L) marked True; 0 if no row counts."""
    if not rows.any():
        return pred.new_zeros(())
    sq = (pred[rows] - target[rows]) ** 2
    if positions is None:
        return sq.mean()
    keep = positions[rows].to(sq.dtype)[..., None]
    return (sq * keep).sum() / (keep.sum() * sq.shape[-1]).clamp_min(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per sample, averaged: scale-free, so a small object counts as much as a large one."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def masked_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean of `values` (N, H, W) over its mask (0 for an empty mask)."""
    return (values * masks).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp_min(1)
