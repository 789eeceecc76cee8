"""ReferringRecord: an image, a referring text and the mask of what it refers to (docs/design.md "Formats").

The segmentation-aware loss term trains the text tower through a frozen CLIPSeg on these, and eval_seg's
JSONL format is the same shape. One JSON object a line: `id`, `image` (relative to the file's folder or an
image root), `text`, `mask` (PNG, nonzero = the referred object), optional `other_mask` (the object a
negated expression excludes), `negated` (bool) and `affirmative` (an expression of the same referent that
negates nothing: "a blue cup" beside "the cup that isn't red"; RefCOCOg gives several sentences per object).
Reading validates every line and names FILE:LINE.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .records import RecordError, RecordWriter, iter_checked_objects

_REQUIRED = ("id", "image", "text", "mask")
_OPTIONAL = ("other_mask", "negated", "affirmative")


@dataclass(frozen=True)
class ReferringRecord:
    id: str
    image: str
    text: str
    mask: str
    other_mask: str | None = None
    negated: bool = False
    affirmative: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


def _problem(obj) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        return f"missing required field(s) {', '.join(repr(m) for m in missing)}"
    for k in (*_REQUIRED, "other_mask", "affirmative"):
        if k in obj and obj[k] is not None and (not isinstance(obj[k], str) or not obj[k].strip()):
            return f"field {k!r} must be a non-empty string, got {obj[k]!r}"
    if "negated" in obj and not isinstance(obj["negated"], bool):
        return f"field 'negated' must be true or false, got {obj['negated']!r}"
    unknown = set(obj) - {*_REQUIRED, *_OPTIONAL}
    if unknown:
        return (f"unknown field(s) {', '.join(sorted(unknown))} (expected {', '.join(_REQUIRED)}, "
                f"{', '.join(_OPTIONAL)})")
    return None


def read_referring(path: str | os.PathLike) -> list[ReferringRecord]:
    """Every record of a ReferringRecord JSONL file; `RecordError` names FILE:LINE on the first bad one.
    Ids are unique; an empty file is an error."""
    out = [ReferringRecord(**obj) for _, obj in iter_checked_objects(path, _problem, "ReferringRecord")]
    if not out:
        raise RecordError(Path(path), 0, "no records (the file is empty or holds only blank lines)")
    return out


def write_referring(path: str | os.PathLike, records) -> int:
    from ..runio import atomic_write_text

    lines = [r.to_json() + "\n" for r in records]
    atomic_write_text(path, "".join(lines))
    return len(lines)


class ReferringWriter(RecordWriter):
    """The append-only, resumable writer (`RecordWriter`) for ReferringRecords: on opening, a torn last line
    is cut off and the ids already written are read (every line validated), so a re-run skips them."""

    def _existing_ids(self) -> set[str]:
        return {obj["id"] for _, obj in iter_checked_objects(self.path, _problem, "ReferringRecord")}
