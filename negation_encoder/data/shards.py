"""Scale-out helpers: deterministic input shards and merging the shards' JSONL outputs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from .records import RecordError, RecordWriter, iter_records

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
    """Append every valid record of `inputs` to `out` once (duplicate ids dropped); resumable."""
    total = dup = written = 0
    with RecordWriter(out) as writer:
        for path in inputs:
            if Path(path).resolve() == Path(out).resolve():
                raise InputError(f"{path}: an input shard cannot also be the merge output")
            try:
                for rec in iter_records(path):
                    total += 1
                    if writer.write(rec):
                        written += 1
                    else:
                        dup += 1
            except RecordError as e:
                raise InputError(str(e)) from None
    return MergeReport(len(inputs), total, written, dup)
