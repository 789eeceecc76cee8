"""Checks every generated caption must pass before it becomes training data.

A reject is counted by reason and never written: generated text that does not mention the negated
concept, has no negation cue, repeats the original, or overflows CLIP's 77 tokens would teach the
encoder the wrong thing silently.
"""

from __future__ import annotations

import re

NEGATION_CUES = (
    "no", "not", "without", "none", "never", "nor", "nothing", "neither", "lacking", "lacks", "free of",
    "absent", "missing", "isn't", "aren't", "doesn't", "don't", "wasn't", "weren't", "cannot", "can't", "n't",
)
_CUE_RE = re.compile(r"(?<![\w'])(" + "|".join(re.escape(c) for c in NEGATION_CUES if c != "n't") + r")(?![\w'])|n't\b")

REJECT_REASONS = ("empty", "no_concept", "no_negation_cue", "unchanged", "too_long")


def has_negation_cue(text: str) -> bool:
    return bool(_CUE_RE.search(text.lower()))


def mentions(text: str, concept: str) -> bool:
    """Whole-word, case-insensitive match of the concept (or its head word, e.g. 'traffic light')."""
    text = text.lower()
    words = concept.lower().split()
    candidates = [concept.lower()] + ([words[-1]] if len(words) > 1 else [])
    return any(re.search(r"(?<!\w)" + re.escape(c) + r"s?(?!\w)", text) for c in candidates)


def check_caption(
    text: str | None,
    original: str,
    concept: str,
    tokenizer=None,
    negated: bool = True,
    max_tokens: int = 77,
) -> str | None:
    """Return the reject reason for a generated caption, or None if it is usable.

    `negated=False` checks an affirmative foil: only mention, change and length are checked.
    """
    if text is None or not text.strip():
        return "empty"
    if not mentions(text, concept):
        return "no_concept"
    if negated and not has_negation_cue(text):
        return "no_negation_cue"
    if text.strip().lower() == original.strip().lower():
        return "unchanged"
    if tokenizer is not None and len(tokenizer(text).input_ids) > max_tokens:
        return "too_long"
    return None
