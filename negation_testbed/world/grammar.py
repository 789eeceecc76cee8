"""The world's negation grammar: named constructions, each with its foil and its affirmative part, split
into what fine-tuning may read and what only the held-out evaluation reads.

Why a grammar: the tiny world CLIP learns "drop what is negated" per sentence frame. Trained on eight
generator-prompt frames, the swapped encoder matched the negative prompt where a negation was a "no"
clause and fell back to the base's behaviour for verb negations and for negations placed after the
subject; what it learned was frames, not negation. Here every training prompt is built from one of many
named constructions (clause-level "there is no", verb negation with have/show/contain, prepositional
"with no"/"without", coordination, negation before or after the subject, trailing negation, the
contraction "isn't"), each with lexical variants, so no one frame dominates.

Held-out constructions, never in any training text (tests/test_grammar.py proves it on generated files
with `HELDOUT_PATTERNS`), come in two kinds, reported apart:
- (a) `HELDOUT_CONSTRUCTIONS`: new constructions of cue words the fine-tuning does see ("no", "not"):
  a copula negation after the negated object ("..., and the fork is not there"), "not any", verb negation
  with a verb never negated in training ("does not include"), a relative clause ("in which there is no");
- (b) `HELDOUT_CUE_CONSTRUCTIONS`: cue words no fine-tuning text contains ("lacking", "free of",
  "missing", "absent"), which the world keeps held out on purpose (`language.HELDOUT_CUES`).
Both are drawn as t2i-compare's `--prompts heldout` / `heldout-cues` sets and seg-compare's
`--prompts heldout`, and are never used to choose anything: validation (`prompts.VALIDATION_T2I_FORMS`)
is the set for choosing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Construction:
    """One way of saying "this, but not that": templates with the slots `{subject}` (the affirmed object
    phrase), `{place}` and `{neg}` (the negated object), or for referring expressions `{kind}` and `{value}`
    (the excluded colour). `negated` is the text, `foil` the same words with the negated object affirmed
    (false for the image), `affirmative` the text with the negation removed (what stays true)."""

    name: str
    cue: str
    negated: str
    foil: str
    affirmative: str

    def fill(self, **slots: str) -> tuple[str, str, str]:
        return self.negated.format(**slots), self.foil.format(**slots), self.affirmative.format(**slots)


def _c(name: str, cue: str, negated: str, foil: str, affirmative: str) -> Construction:
    return Construction(name, cue, negated, foil, affirmative)


# Generator prompts fine-tuning reads (`datagen.make_t2i_prompt_data`). Variants of one construction share
# its name. None contains an evaluated or validation prompt (tests/test_testbed.py: the t2i forms of
# `prompts.T2I_FORMS` and `prompts.VALIDATION_T2I_FORMS`, negated or control, never occur inside one).
TRAIN_T2I_CONSTRUCTIONS = (
    # prepositional "with no"
    _c("with_no", "no", "{subject} in the {place} with no {neg}", "{subject} in the {place} with a {neg}",
       "{subject} in the {place}"),
    _c("with_no", "no", "the {place}, with {subject} and with no {neg}", "the {place}, with {subject} and with a {neg}",
       "the {place}, with {subject}"),
    # "has no": a possessive verb with a negative object
    _c("has_no", "no", "a {place} that has {subject} but no {neg}", "a {place} that has {subject} and a {neg}",
       "a {place} that has {subject}"),
    _c("has_no", "no", "this {place} has {subject} and no {neg}", "this {place} has {subject} and a {neg}",
       "this {place} has {subject}"),
    _c("has_no", "no", "a {place} that contains {subject} and no {neg}", "a {place} that contains {subject} and a {neg}",
       "a {place} that contains {subject}"),
    # clause-level "there is no"
    _c("there_is_no", "there is no", "the {place} has {subject}; there is no {neg}",
       "the {place} has {subject}; there is a {neg}", "the {place} has {subject}"),
    _c("there_is_no", "there is no", "{subject} in this {place} and there is no {neg}",
       "{subject} in this {place} and there is a {neg}", "{subject} in this {place}"),
    # verb negation ("does not have/show/contain"), the subject said first
    _c("verb_negation", "not", "the {place} shows {subject} and does not show a {neg}",
       "the {place} shows {subject} and shows a {neg}", "the {place} shows {subject}"),
    _c("verb_negation", "not", "this {place} photo contains {subject} and does not contain a {neg}",
       "this {place} photo contains {subject} and contains a {neg}", "this {place} photo contains {subject}"),
    _c("verb_negation", "not", "a {place} that has {subject} and does not have a {neg}",
       "a {place} that has {subject} and has a {neg}", "a {place} that has {subject}"),
    _c("verb_negation", "not", "the {place} has {subject}, it does not have any {neg}",
       "the {place} has {subject}, it has a {neg}", "the {place} has {subject}"),
    # coordination of an affirmed and a negated object
    _c("coordination", "not", "in this {place}, {subject} and not one {neg}", "in this {place}, {subject} and one {neg}",
       "in this {place}, {subject}"),
    _c("coordination", "not", "{place} photo, {subject} but not a {neg}", "{place} photo, {subject} and a {neg}",
       "{place} photo, {subject}"),
    _c("coordination", "no", "{subject} and no {neg} in this {place}", "{subject} and a {neg} in this {place}",
       "{subject} in this {place}"),
    # "without"
    _c("without", "without", "{subject} without a {neg}, in a {place}", "{subject} with a {neg}, in a {place}",
       "{subject}, in a {place}"),
    _c("without", "without", "{subject}, {place}, without any {neg}", "{subject}, {place}, with a {neg}",
       "{subject}, {place}"),
    # the negation before the subject
    _c("negation_first", "no", "no {neg}, {subject} in the {place}", "a {neg}, {subject} in the {place}",
       "{subject} in the {place}"),
    _c("negation_first", "without", "without a {neg}: {subject}, {place}", "with a {neg}: {subject}, {place}",
       "{subject}, {place}"),
    _c("negation_first", "there is no", "there is no {neg} here, {subject} in this {place}",
       "there is a {neg} here, {subject} in this {place}", "{subject} in this {place}"),
    # trailing negation, after the subject, with a tail
    _c("trailing", "no", "the {place}: {subject}, no {neg}", "the {place}: {subject}, a {neg}", "the {place}: {subject}"),
    _c("trailing", "no", "{subject} in this {place}, no {neg} in sight", "{subject} in this {place}, a {neg} in sight",
       "{subject} in this {place}"),
    _c("trailing", "no", "{subject}, the {place}, no {neg} at all", "{subject}, the {place}, a {neg}",
       "{subject}, the {place}"),
    # the contraction
    _c("contraction", "isn't", "the {place} has {subject}; there isn't a {neg}", "the {place} has {subject}; there is a {neg}",
       "the {place} has {subject}"),
    _c("contraction", "isn't", "{subject} in the {place}, there isn't any {neg}",
       "{subject} in the {place}, there is a {neg}", "{subject} in the {place}"),
)

# The eight frames the generator-prompt source trained on before the grammar (`datagen`'s `t2i` source, the
# default recipe's; in this order, so its records are the ones the published default was trained on). The
# `t2i-grammar` source trains on all of TRAIN_T2I_CONSTRUCTIONS instead: on the validation sets it did not
# beat these frames (docs/testbed.md, "A grammar for training text"), so the default keeps them.
T2I_FRAMES = tuple(TRAIN_T2I_CONSTRUCTIONS[i] for i in (0, 19, 2, 15, 11, 14, 4, 12))

# (a) unseen constructions of trained cue words: only `--prompts heldout` reads them.
HELDOUT_CONSTRUCTIONS = (
    _c("copula_after_object", "not", "{subject} in the {place}, and the {neg} is not there",
       "{subject} in the {place}, and the {neg} is there", "{subject} in the {place}"),
    _c("not_any", "not", "the {place} has {subject} but not any {neg}", "the {place} has {subject} and a {neg}",
       "the {place} has {subject}"),
    _c("unseen_verb", "not", "a {place} picture that includes {subject} and does not include a {neg}",
       "a {place} picture that includes {subject} and includes a {neg}", "a {place} picture that includes {subject}"),
    _c("relative_clause", "there is no", "{subject} at a {place} in which there is no {neg}",
       "{subject} at a {place} in which there is a {neg}", "{subject} at a {place}"),
)
# Validation constructions (`--prompts validation-constructions`): unseen constructions of the trained cues too,
# neither trained nor held out, so a training-text choice (frames or grammar, a recipe) can weigh unseen wording
# without ever reading a held-out number. Written before any encoder was measured on them; the no-leak test
# covers them (`VALIDATION_PATTERNS`).
VALIDATION_CONSTRUCTIONS = (
    _c("no_subject_passive", "no", "{subject} in the {place}; no {neg} is shown",
       "{subject} in the {place}; a {neg} is shown", "{subject} in the {place}"),
    _c("with_not_a", "not", "the {place} with {subject}, with not a {neg}", "the {place} with {subject}, with a {neg}",
       "the {place} with {subject}"),
    _c("shows_no", "no", "the {place} picture shows {subject} and shows no {neg}",
       "the {place} picture shows {subject} and shows a {neg}", "the {place} picture shows {subject}"),
    _c("not_one_first", "not", "not one {neg} in the {place}, only {subject}", "one {neg} in the {place}, and {subject}",
       "only {subject} in the {place}"),
)
# (b) cue words no fine-tuning text contains: only `--prompts heldout-cues` reads them.
HELDOUT_CUE_CONSTRUCTIONS = (
    _c("lacking", "lacking", "{subject} in the {place}, lacking a {neg}", "{subject} in the {place}, with a {neg}",
       "{subject} in the {place}"),
    _c("free_of", "free of", "the {place} with {subject}, free of any {neg}", "the {place} with {subject} and a {neg}",
       "the {place} with {subject}"),
    _c("missing", "missing", "{subject} in the {place}, with the {neg} missing", "{subject} in the {place}, with a {neg}",
       "{subject} in the {place}"),
    _c("absent", "absent", "the {place} shows {subject}, the {neg} absent", "the {place} shows {subject} and a {neg}",
       "the {place} shows {subject}"),
)

# Referring expressions (slots {kind}, {value}: "the cup that is not red" picks the cup that is not red)
# fine-tuning reads (`language.FINE_TUNING_REFERRING_FORMS`, in this order; the first four are also the split
# route's fit forms, `language.TRAIN_REFERRING_FORMS`), by construction.
TRAIN_REFERRING_CONSTRUCTIONS = (
    ("relative_clause", "a {kind} which is not {value}"),
    ("contraction", "the {kind} that isn't {value}"),
    ("correction_after", "the other {kind}, not the {value} one"),
    ("relative_clause_one", "the {kind} that is not the {value} one"),
    ("correction_first", "not the {value} one but the other {kind}"),
    ("negation_first", "not {value}: the other {kind}"),
    ("contraction_one", "a {kind} that isn't the {value} one"),
    ("no_correction", "the {value} one? no, the other {kind}"),
)

# (a) unseen constructions of trained cues, for seg-compare's `--prompts heldout`; the fine-tuning forms are
# `language.FINE_TUNING_REFERRING_FORMS`, the evaluated ones `language.REFERRING_FORMS`.
HELDOUT_REFERRING_FORMS = (
    "the {kind}, the one that is not {value}",
    "which {kind}? the one that is not {value}",
    "the {kind} in the picture that is not {value}",
)

# What identifies a held-out construction in any text: a training text matching one leaks it. Written from
# the constructions' distinctive words, not from their slots, so a leak with other objects is caught too.
HELDOUT_PATTERNS = {
    "copula_after_object": r"\bthe \w+ is not (there|here)\b",
    "not_any": r"\bnot any\b",
    "unseen_verb": r"\bnot include\b",
    "relative_clause": r"\bin which\b",
    "lacking": r"\blacking\b",
    "free_of": r"\bfree of\b",
    "missing": r"\bmissing\b",
    "absent": r"\babsent\b",
    "referring_appositive": r", the one that is not\b",
    "referring_question": r"\bwhich \w+\?",
    "referring_in_the_picture": r"\bin the picture that is not\b",
}


# What identifies a validation construction: no training text may match one either (tests/test_grammar.py).
VALIDATION_PATTERNS = {
    "no_subject_passive": r"\bno \w+ is shown\b",
    "with_not_a": r"\bwith not a\b",
    "shows_no": r"\bshows no\b",
    "not_one_first": r"\bnot one \w+ in the \w+, only\b",
}


def validation_matches(text: str) -> list[str]:
    """Names of the validation constructions whose pattern `text` matches (empty: the text may train)."""
    return [name for name, pattern in VALIDATION_PATTERNS.items() if re.search(pattern, text.lower())]


def heldout_matches(text: str) -> list[str]:
    """Names of the held-out constructions whose pattern `text` matches (empty: the text may train)."""
    return [name for name, pattern in HELDOUT_PATTERNS.items() if re.search(pattern, text.lower())]


def construction_names(constructions: tuple[Construction, ...]) -> tuple[str, ...]:
    """The distinct construction names, in order."""
    return tuple(dict.fromkeys(c.name for c in constructions))
