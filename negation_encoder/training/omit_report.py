"""What the omit_states term trains on, record by record (`negenc data omit-pairs`).

The term needs no file of its own: it reads each NegationRecord's true caption (the negated caption; a
presence record's original) and the splitter's affirmative part of it, both computed at training time
(`batching.example_from_record`). What a user wants to see before training is which records feed it and
the pair each one gives, so this reports exactly that, with the term's own eligibility rule, and why every
other record is left out (the splitter was unsure of the scope, found no negation, or the record's type is
not among the term's `types`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..data.records import NegationRecord, RecordWriter, iter_checked_objects
from ..splitting import NegationSplit, split_negation
from .batching import example_from_record, true_caption
from .terms.registry import term_class


@dataclass(frozen=True)
class OmitPair:
    """One record as omit_states reads it: `trains` and, when it does, the (negated, affirmative) pair its
    states are pulled from and toward; otherwise `skipped` says why."""

    id: str
    source: str
    negation_type: str
    text: str  # the record's true caption: the text whose states train
    trains: bool
    affirmative: str | None = None  # the frozen base's reading of this is the target
    negated: tuple[str, ...] = ()
    skipped: str | None = None

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "source": self.source, "negation_type": self.negation_type,
                           "text": self.text, "trains": self.trains, "affirmative": self.affirmative,
                           "negated": list(self.negated), "skipped": self.skipped}, ensure_ascii=False)


class OmitPairs:
    """The omit_states term's rule with its `types` option (empty: every type, as the term's default)."""

    def __init__(self, types: Sequence[str] = ()):
        cls = term_class("omit_states")
        self.types = list(types)
        self.term = cls(cls.config_class(types=self.types), None)  # validates the types as the term does
        self._splits: dict[str, NegationSplit] = {}

    def pair(self, rec: NegationRecord) -> OmitPair:
        text = true_caption(rec)
        if text not in self._splits:
            self._splits[text] = split_negation(text)
        split = self._splits[text]
        ex = example_from_record(rec, 0, split)
        base = dict(id=rec.id, source=rec.source, negation_type=rec.negation_type, text=text)
        if self.term.eligible(ex):
            return OmitPair(**base, trains=True, affirmative=ex.affirmative, negated=tuple(split.negated))
        if split.unsure:
            why = f"unsure: {split.unsure}"
        elif not split.has_negation:
            why = "no negation: the splitter finds none in the true caption" + (
                " (a presence record's true caption is its original)" if rec.negation_type == "presence" else "")
        else:
            why = f"type: {rec.negation_type} is not in omit_states.types {self.types}"
        return OmitPair(**base, trains=False, skipped=why)


class OmitPairWriter(RecordWriter):
    """The append-only, resumable writer of report lines (`RecordWriter`: a torn last line is cut off, the ids
    already written are skipped)."""

    def _existing_ids(self) -> set[str]:
        def check(obj) -> str | None:
            return None if isinstance(obj, dict) and isinstance(obj.get("id"), str) else "expected a report line"

        return {obj["id"] for _, obj in iter_checked_objects(self.path, check, "omit-pairs report")}
