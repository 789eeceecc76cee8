"""Negation data: the NegationRecord format, its JSONL I/O, and the generation pipelines."""

from .records import (
    NEGATION_TYPES,
    NegationRecord,
    RecordError,
    RecordWriter,
    iter_records,
    read_records,
    write_records,
)
from .summary import summarize_records

__all__ = [
    "NEGATION_TYPES",
    "NegationRecord",
    "RecordError",
    "RecordWriter",
    "iter_records",
    "read_records",
    "summarize_records",
    "write_records",
]
