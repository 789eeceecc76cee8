"""The split result: what a caption affirms and what it negates."""

from __future__ import annotations

from dataclasses import dataclass

NEGATION_TYPES: tuple[str, ...] = ("object", "attribute", "action", "relation")
EMPTY_AFFIRMATIVE = "a photo"  # what an all-negative caption ("there is no dog") affirms


@dataclass(frozen=True)
class NegatedConcept:
    """One negated concept: its text ("fork", "red cup", "wearing a hat", "cat on the sofa"), its type
    (`NEGATION_TYPES`) and the cue that negates it ("" when unknown, e.g. an LLM that did not say)."""

    text: str
    type: str = "object"
    cue: str = ""

    def to_dict(self) -> dict:
        return {"text": self.text, "type": self.type, "cue": self.cue}


@dataclass(frozen=True)
class NegationSplit:
    """What a caption affirms and what it negates. `affirmative` is the caption itself when nothing is
    negated, and `EMPTY_AFFIRMATIVE` when everything is ("there is no dog").

    `negated`, `negation_types` and `concept_cues` run in parallel (one entry per concept; `concepts`
    zips them); `cues` lists each cue occurrence once ("neither X nor Y" has one cue, two concepts).
    Types and concept cues may be left out: types default to "object", a single cue applies to every
    concept.

    `unsure` says why a splitter that found a cue left the caption whole instead of guessing its scope
    ("never seen before: a purple cow"): such a split negates nothing (`has_negation` is false, the
    affirmative part is the caption), so every route reads the text as written; None otherwise."""

    text: str
    affirmative: str
    negated: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    negation_types: tuple[str, ...] = ()
    concept_cues: tuple[str, ...] = ()
    unsure: str | None = None

    def __post_init__(self) -> None:
        n = len(self.negated)
        if self.unsure is not None and n:
            raise ValueError(f"an unsure split negates nothing, got {n} negated concepts ({self.unsure})")
        types = tuple(self.negation_types) or ("object",) * n
        cues = tuple(self.cues)
        per = tuple(self.concept_cues) or (cues * n if len(cues) == 1 else cues if len(cues) == n else ("",) * n)
        if len(types) != n or len(per) != n:
            raise ValueError(f"{n} negated concepts but {len(types)} types and {len(per)} concept cues")
        bad = sorted(set(types) - set(NEGATION_TYPES))
        if bad:
            raise ValueError(f"negation type(s) {', '.join(bad)} not in {', '.join(NEGATION_TYPES)}")
        for name, value in (("negated", tuple(self.negated)), ("cues", cues), ("negation_types", types),
                            ("concept_cues", per)):
            object.__setattr__(self, name, value)

    @property
    def has_negation(self) -> bool:
        return bool(self.negated)

    @property
    def is_bare(self) -> bool:
        """A negation that affirms nothing ("a photo with no fork here"): nothing but `EMPTY_AFFIRMATIVE` is
        left. Such a caption cannot pick its image out of a batch, so the trainer keeps it out of InfoNCE."""
        return self.has_negation and self.affirmative == EMPTY_AFFIRMATIVE

    @property
    def concepts(self) -> tuple[NegatedConcept, ...]:
        return tuple(NegatedConcept(*c) for c in zip(self.negated, self.negation_types, self.concept_cues,
                                                      strict=True))

    def to_dict(self) -> dict:
        return {"text": self.text, "affirmative": self.affirmative, "negated": list(self.negated),
                "cues": list(self.cues), "negation_types": list(self.negation_types),
                "concepts": [c.to_dict() for c in self.concepts], "has_negation": self.has_negation,
                "is_bare": self.is_bare, "unsure": self.unsure}

    @classmethod
    def from_dict(cls, d: dict) -> NegationSplit:
        concepts = d.get("concepts") or [{"text": t} for t in d.get("negated", [])]
        return cls(d["text"], d["affirmative"], tuple(c["text"] for c in concepts), tuple(d.get("cues", ())),
                   tuple(c.get("type", "object") for c in concepts), tuple(c.get("cue", "") for c in concepts),
                   d.get("unsure"))

