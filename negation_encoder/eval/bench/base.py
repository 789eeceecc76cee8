"""What every benchmark family returns: a flat dict of numbers and one prediction record per item."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class BenchOutput:
    metrics: dict[str, float | int | None]  # flat; NaN is stored as None (JSON has no NaN)
    predictions: list[dict] = field(default_factory=list)


def number(value: float) -> float | None:
    """A metric as JSON can hold it: NaN (a benchmark with no items) becomes None."""
    value = float(value)
    return None if math.isnan(value) else value
