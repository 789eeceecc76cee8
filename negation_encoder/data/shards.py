"""Scale-out helpers: deterministic input shards and merging the shards' JSONL outputs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from .records import NegationRecord, RecordError, iter_records, write_records

T = TypeVar("T")


def parse_shard(spec: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"--shard expects i/n (e.g. 0/4), got {spec!r}") from None
    if not (n > 0 and 0 <= i < n):
        raise InputError(f"--shard {spec}: need 0 <= i < n")
    return i, n


def shard_items(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items whose id hashes to this shard: stable under reordering, disjoint, and covering."""
    def bucket(item) -> int:
        return int(hashlib.sha1(str(item.id).encode()).hexdigest()[:8], 16) % count

    return [it for it in items if bucket(it) == index]


@dataclass
class MergeReport:
    inputs: int
    records_in: int
    written: int
    duplicates: int


def merge_shards(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> MergeReport:
    """Merge every valid record of `inputs` into `out` once (duplicate ids dropped), keeping the records
    `out` already has. Every input is read and validated before anything is written, and `out` is
    replaced atomically, so a bad or missing input leaves it exactly as it was."""
    out = Path(out)
    for path in inputs:
        if Path(path).resolve() == out.resolve():
            raise InputError(f"{path}: an input shard cannot also be the merge output")
    merged: dict[str, NegationRecord] = {}
    try:
        if out.exists():
            for rec in iter_records(out):
                merged[rec.id] = rec
        kept = len(merged)
        total = dup = 0
        for path in inputs:
            for rec in iter_records(path):
                total += 1
                if rec.id in merged:
                    dup += 1
                else:
                    merged[rec.id] = rec
    except RecordError as e:
        raise InputError(str(e)) from None
    write_records(out, merged.values())
    return MergeReport(len(inputs), total, len(merged) - kept, dup)
