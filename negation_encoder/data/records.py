"""NegationRecord and its JSONL I/O: the one format every pipeline writes and the trainer reads.

Reading validates every line and names `FILE:LINE` on the first bad one. Writing is append-only and
crash-safe: each record is one `write()` of a full line, and on resume a torn last line (a job killed
mid-write leaves a line with no newline) is cut off, never parsed, so nothing half-written is trained on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..runio import atomic_write_text, repair_torn_tail

NEGATION_TYPES = ("absence", "presence", "attribute", "action", "relation")
# The one table between the two vocabularies of negation types: a training record names what its negated
# caption denies ("absence": the negated object is not in the image; "presence": the caption denies an
# object that is there, a false caption), a t2i prompt file (`eval_t2i.prompts.NEGATION_TYPES`) what the
# prompt negates ("object", "attribute", "action", "relation", "scene", or "none" for a control prompt). The
# shared kinds map as below; "presence" has no prompt kind, "scene" and "none" no record kind. Each reader
# accepts its own names, and a prompt file also takes a record's name for a shared kind (docs/t2i.md).
PROMPT_TYPE_OF_RECORD_TYPE = {"absence": "object", "attribute": "attribute", "action": "action",
                              "relation": "relation"}

# name -> (python type, required)
_FIELDS: dict[str, tuple[type, bool]] = {
    "id": (str, True),
    "image": (str, True),
    "caption": (str, True),
    "negated_caption": (str, True),
    "negation_type": (str, True),
    "negated_concept": (str, True),
    "source": (str, True),
    "hard_negatives": (list, False),
    "provenance": (dict, False),
    "extra_positives": (list, False),
    "distractor_images": (list, False),
}
# optional fields written only when set (None: the key is absent), so a record without them round-trips
# without gaining empty keys
_OPTIONAL = ("extra_positives", "distractor_images")


class RecordError(DataError):
    """A bad record. `str()` is one line: `FILE:LINE: what was wrong and what was expected`."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass
class NegationRecord:
    """One image with its original caption, a negated caption that is true for it, and foils."""

    id: str
    image: str
    caption: str
    negated_caption: str
    negation_type: str
    negated_concept: str
    source: str
    hard_negatives: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra_positives: list[str] | None = None  # further captions true for the image
    distractor_images: list[str] | None = None  # images with the negated concept: negatives of negated_caption
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept on round trip

    def __post_init__(self) -> None:
        given = [name for name in _OPTIONAL if name in self.extra]
        for name in given:  # a known field handed in with the unknown keys is taken as the field
            if getattr(self, name) is not None:
                raise DataError(f"field {name!r} given twice (as a field and in extra)")
            setattr(self, name, self.extra[name])
        if given:
            self.extra = {k: v for k, v in self.extra.items() if k not in given}
        problem = _check_fields(self.to_dict())
        if problem:
            raise DataError(problem)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        for name in _OPTIONAL:
            if out[name] is None:
                del out[name]
        out.update({k: v for k, v in extra.items() if k not in out})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> NegationRecord:
        problem = _check_fields(obj)
        if problem:
            raise DataError(problem)
        known = {k: obj[k] for k in _FIELDS if k in obj}
        extra = {k: v for k, v in obj.items() if k not in _FIELDS}
        return cls(**known, extra=extra)


def _check_fields(obj: Any) -> str | None:
    """Return a one-line description of what is wrong with `obj`, or None if it is a valid record."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k, (_, required) in _FIELDS.items() if required and k not in obj]
    if missing:
        return f"missing required field(s) {', '.join(repr(m) for m in missing)}"
    for name, (kind, _) in _FIELDS.items():
        if name in obj and not isinstance(obj[name], kind):
            return f"field {name!r} must be {kind.__name__}, got {type(obj[name]).__name__} ({obj[name]!r:.60})"
    for name in ("id", "caption", "negated_caption", "negated_concept", "source"):
        if not obj[name].strip():
            return f"field {name!r} must be a non-empty string, got {obj[name]!r}"
    if obj["negation_type"] not in NEGATION_TYPES:
        record_name = {v: k for k, v in PROMPT_TYPE_OF_RECORD_TYPE.items()}.get(obj["negation_type"])
        hint = f" (the t2i prompt files' name; a record says {record_name!r})" if record_name else ""
        return (f"field 'negation_type' must be one of {'|'.join(NEGATION_TYPES)}, got {obj['negation_type']!r}"
                + hint)
    bad = [i for i, h in enumerate(obj.get("hard_negatives", [])) if not isinstance(h, str)]
    if bad:
        return f"field 'hard_negatives' must be a list of strings; item(s) {bad} are not"
    for name in _OPTIONAL:
        bad = [i for i, t in enumerate(obj.get(name, [])) if not isinstance(t, str) or not t.strip()]
        if bad:
            return f"field {name!r} must be a list of non-empty strings; item(s) {bad} are not"
    if obj["image"] in obj.get("distractor_images", []):  # a distractor is a negative of the negated caption
        return f"field 'distractor_images' lists the record's own image {obj['image']!r}"
    return None


def iter_records(path: str | os.PathLike) -> Iterator[NegationRecord]:
    """Yield validated records; raise `RecordError` naming the file and line of the first bad one.

    Blank lines are skipped. Ids must be unique within the file.
    """
    for _, rec in iter_numbered_records(path):
        yield rec


def iter_checked_objects(path: str | os.PathLike, check: Callable[[object], str | None], kind: str
                         ) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) of a JSONL record file, each passed by `check` (which returns a problem
    or None), ids unique. The one reader of our record files (NegationRecord, ReferringRecord): a leading
    UTF-8 byte-order mark is skipped; bytes that are not UTF-8 text (a binary file, a stray Latin-1 byte) are reported with their line and column, never
    decoded wrongly; blank lines are skipped; `RecordError` names FILE:LINE of the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(path, 0, f"file not found (expected a {kind} .jsonl file)")
    seen: dict[str, int] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                # a byte-order mark some editors put at the start of a file is not part of the first record
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(path, lineno, f"not UTF-8 text: byte 0x{raw[e.start]:02x} at column {e.start + 1} "
                                  "(expected JSON lines; is this a binary file?)") from None
            if "\x00" in line:
                raise RecordError(path, lineno, "NUL byte in the line (expected JSON lines; is this a binary file?)")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                torn = "" if line.endswith("\n") else " (last line has no newline: a torn write?)"
                raise RecordError(path, lineno, f"invalid JSON: {e.msg} at column {e.colno}{torn}") from None
            problem = check(obj)
            if problem:
                raise RecordError(path, lineno, problem)
            if obj["id"] in seen:
                raise RecordError(path, lineno, f"duplicate id {obj['id']!r} (first seen on line {seen[obj['id']]})")
            seen[obj["id"]] = lineno
            yield lineno, obj


def iter_numbered_records(path: str | os.PathLike) -> Iterator[tuple[int, NegationRecord]]:
    """(line number, record) pairs, validated as `iter_records` does (`iter_checked_objects`)."""
    for lineno, obj in iter_checked_objects(path, _check_fields, "NegationRecord"):
        yield lineno, NegationRecord.from_dict(obj)


def read_records(path: str | os.PathLike) -> list[NegationRecord]:
    return list(iter_records(path))


def write_records(path: str | os.PathLike, records: Iterable[NegationRecord]) -> int:
    """Write a fresh file atomically (temp file + rename). Returns the number of records."""
    lines = [rec.to_json() + "\n" for rec in records]
    atomic_write_text(path, "".join(lines))
    return len(lines)


class RecordWriter:
    """Append-only, resumable JSONL writer.

    Opening an existing file drops a torn last line (bytes after the final newline), reads the ids
    already written, and `write()` then skips any record whose id is among them, so a killed job that
    is simply re-run produces no duplicates and no gaps. Each record is flushed as it is written.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped_torn_bytes = repair_torn_tail(self.path)
        self.ids: set[str] = self._existing_ids() if self.path.exists() else set()
        self.resumed_count = len(self.ids)
        self._fh = None  # opened on the first write: a run that writes nothing leaves no empty file

    def _existing_ids(self) -> set[str]:
        """The ids already in the file, every line validated (a writer of another record type reads its own)."""
        return {rec.id for rec in iter_records(self.path)}

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.ids

    def write(self, record) -> bool:
        """Append `record` (a NegationRecord, or any record with `id` and `to_json()` for a subclass); return
        False (and write nothing) if its id is already in the file."""
        if record.id in self.ids:
            return False
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.ids.add(record.id)
        return True

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
