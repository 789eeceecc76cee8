"""A memory budget for what frozen models give every step and never change: the frozen base tower's
readings of each example's texts, and the frozen CLIPSeg's vision activations of each referring image.

Terms compute those once, before the first step, in a fixed order (so a resumed run reads exactly what an
uninterrupted one read), when they fit in `data.frozen_cache_mb`; what does not fit is recomputed every
step, as the plain route does, so a real model on a large dataset costs what it did, never an
out-of-memory error.
"""

from __future__ import annotations

from typing import Any

import torch


def nbytes(value: Any) -> int:
    """The bytes a tensor (or a list/tuple/dict of them) holds."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


class FrozenCache:
    def __init__(self, budget_mb: float):
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self.kept: dict[str, int] = {}  # what was kept, and its bytes (for the log and the benchmark)

    def reserve(self, name: str, size: int) -> bool:
        """Whether `size` more bytes fit; if they do, they are counted as `name`'s."""
        if self.used + size > self.budget:
            return False
        self.used += size
        self.kept[name] = self.kept.get(name, 0) + size
        return True
