"""The two backend protocols the negation pipelines talk to.

They are task-level on purpose: a pipeline asks "which plausible objects does this caption leave out?"
or "is a fork visible in this image?", and each backend decides how to ask its model (prompt
template, chat format, next-token yes/no probabilities) and how to parse the answer. The testbed's
oracles implement the same protocols from the world's annotations, so one pipeline code path serves
the offline world and real LLM/MLLM servers. Every method is batched; `None` in a result means the
model's output could not be used (malformed JSON, empty text) and is counted as a reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RewriteRequest:
    """Ask the LLM to rewrite `caption` so that it negates (or, for foils, affirms) `concept`.

    kind: "absence" (negate an absent object), "affirm" (add the object affirmatively: a foil),
    "presence" (negate an object the caption mentions: a foil for the image), or for VQA-derived
    data "attribute" / "relation" with the "no"-answered `question`, or "compositional": affirm
    `detail["affirm"]` and negate `detail["negate"]` (= `concept`) in one sentence; "t2i" / "t2i_affirm":
    a short generator prompt of `caption` saying there is no `concept` / there is one too; "referring": a
    referring expression (`caption`, a templated one) said naturally, keeping its negation of `concept`. `detail` carries structured
    facts where a data source has them (e.g. the attribute value the question asked about).
    `style` is a seed so that a negated caption and its foils share one sentence frame.
    """

    caption: str
    concept: str
    kind: str
    question: str | None = None
    answer: str | None = None
    detail: dict = field(default_factory=dict)
    style: int = 0


@runtime_checkable
class TextLLM(Protocol):
    name: str
    prompt_version: str

    def propose_objects(self, captions: list[str], k: int) -> list[list[str] | None]:
        """For each caption, up to k plausible objects it does not mention (the image is not seen)."""
        ...

    def rewrite(self, requests: list[RewriteRequest]) -> list[str | None]:
        """One rewritten caption per request."""
        ...


@runtime_checkable
class VisionLLM(Protocol):
    name: str
    prompt_version: str

    def presence_probability(self, images: list[str], concepts: list[str]) -> list[float]:
        """P(yes) that `concept` is visible in each image (images are keys the backend resolves)."""
        ...
