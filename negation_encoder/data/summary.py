"""Counts over a NegationRecord file, as `negenc data validate` prints them."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from .records import RecordError, iter_numbered_records
from .validation import record_length_problem


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


def summarize_records(path: str | os.PathLike, tokenizer=None, max_tokens: int = 77) -> RecordSummary:
    """Validate every record of `path` and count them. Raises `RecordError` on the first bad record, a
    text longer than `max_tokens` (exact with `tokenizer`, a lower bound without), or a file with no
    records at all."""
    s = RecordSummary()
    for line, rec in iter_numbered_records(path):
        problem = record_length_problem(rec, tokenizer, max_tokens)
        if problem:
            raise RecordError(path, line, problem)
        s.total += 1
        s.by_source[rec.source] += 1
        s.by_type[rec.negation_type] += 1
        s.by_source_and_type[(rec.source, rec.negation_type)] += 1
    if s.total == 0:
        raise RecordError(path, 0, "no records (the file is empty or holds only blank lines)")
    return s
