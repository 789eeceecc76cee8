"""Checks every generated caption must pass before it becomes training data.

A reject is counted by reason and never written: generated text that does not mention the negated
concept, has no negation cue, repeats the original, or overflows CLIP's 77 tokens would teach the
encoder the wrong thing silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..splitting import has_negation_cue


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


# ---- record-level length rule: shared by `negenc data validate` and the trainer

_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", re.UNICODE)


def record_texts(rec) -> list[tuple[str, str]]:
    """(field, text) for every text a record contributes to training."""
    out = [("caption", rec.caption), ("negated_caption", rec.negated_caption)]
    out += [("hard_negatives", t) for t in rec.hard_negatives]
    out += [("extra_positives", t) for t in rec.extra_positives or () if isinstance(t, str)]
    return out


def token_count(text: str, tokenizer=None) -> int:
    """Tokens with bos/eos: exact with a tokenizer; without one, the pieces CLIP's pre-tokenizer splits
    the text into, a lower bound (BPE never merges across pieces), so an overflow found is real."""
    if tokenizer is not None:
        return len(tokenizer(text).input_ids)
    return len(_PIECES.findall(text.lower())) + 2


def token_counts(texts: Iterable[str], tokenizer=None) -> dict[str, int]:
    """`token_count` of each distinct text. With a tokenizer it is one batched call: a fast tokenizer
    encodes a batch in parallel, where one call per text spent ~10 s on the demo's 24,000 records."""
    distinct = list(dict.fromkeys(texts))
    if tokenizer is None or not distinct:
        return {t: token_count(t) for t in distinct}
    return {t: len(ids) for t, ids in zip(distinct, tokenizer(distinct).input_ids, strict=True)}


def record_length_problem(rec, tokenizer=None, limit: int = 77, counts: Mapping[str, int] | None = None
                          ) -> str | None:
    """One phrase naming the first text of `rec` longer than `limit` tokens, or None. Truncating such a
    text would cut off the words that carry the negation, so it is an error, not a warning. `counts`
    (from `token_counts`) replaces tokenizing each text here."""
    for key, text in record_texts(rec):
        n = counts[text] if counts is not None else token_count(text, tokenizer)
        if n > limit:
            return f"{key} has {n} tokens, more than the encoder's {limit} ({text[:50]!r}...)"
    return None
