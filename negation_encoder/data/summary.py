"""Counts over a NegationRecord file, as `negenc data validate` prints them."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from .records import iter_records


@dataclass
class RecordSummary:
    total: int = 0
    by_source: Counter = field(default_factory=Counter)
    by_type: Counter = field(default_factory=Counter)
    by_source_and_type: Counter = field(default_factory=Counter)

    def to_table(self) -> str:
        types = sorted(self.by_type)
        header = "| source | " + " | ".join(types) + " | total |"
        lines = [header, "|" + "---|" * (len(types) + 2)]
        for src in sorted(self.by_source):
            cells = [str(self.by_source_and_type[(src, t)]) for t in types]
            lines.append(f"| {src} | " + " | ".join(cells) + f" | {self.by_source[src]} |")
        cells = [str(self.by_type[t]) for t in types]
        lines.append("| **all** | " + " | ".join(cells) + f" | {self.total} |")
        return "\n".join(lines)


def summarize_records(path: str | os.PathLike) -> RecordSummary:
    """Validate every record of `path` (raises `RecordError` on the first bad one) and count them."""
    s = RecordSummary()
    for rec in iter_records(path):
        s.total += 1
        s.by_source[rec.source] += 1
        s.by_type[rec.negation_type] += 1
        s.by_source_and_type[(rec.source, rec.negation_type)] += 1
    return s
