"""Outputs of frozen models kept across steps, within a memory budget.

The frozen base tower reads the same texts again every epoch, and the frozen CLIPSeg's vision tower the
same images: what does not change is computed once (the image-embedding cache's idea, for what the loss
terms read every step). Entries are added until `budget_mb` is used; after that the rest is recomputed
each time, so a real model on a large dataset degrades to today's cost, never to an out-of-memory error.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


class FrozenCache:
    def __init__(self, budget_mb: float):
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self._store: dict[Hashable, Any] = {}
        self.hits = self.misses = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def get(self, key: Hashable) -> Any:
        return self._store.get(key)

    def put(self, key: Hashable, value: Any) -> bool:
        """Keep `value` (tensors are stored detached) if the budget allows; True when kept."""
        n = _nbytes(value)
        if key in self._store or self.used + n > self.budget:
            return key in self._store
        self._store[key] = value
        self.used += n
        return True

    def rows(self, keys: list[Hashable], compute: Callable[[list[int]], list[Any]]) -> list[Any]:
        """The value of every key, computing the missing ones together (`compute(indices)` returns one value
        per index) and keeping what fits."""
        found = [self._store.get(k) for k in keys]
        missing = [i for i, v in enumerate(found) if v is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            for i, value in zip(missing, compute(missing), strict=True):
                found[i] = value
                self.put(keys[i], value)
        return found


def row_key(kind: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple:
    """A hashable key for one tokenized row and how it is read (with or without its mask)."""
    ids = input_ids.detach().cpu()
    mask = None if attention_mask is None else attention_mask.detach().cpu().numpy().tobytes()
    return kind, ids.numpy().tobytes(), mask
