"""The LLM splitter: a chat model's split, with the rules as the fallback for a malformed answer."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .cues import _cue_occurrences, find_cues
from .rules import RuleSplitter
from .tokens import _PUNCT, _STOP, _tokenise
from .types import EMPTY_AFFIRMATIVE, NEGATION_TYPES, NegatedConcept, NegationSplit

LLM_PROMPT_VERSION = "v2"  # v2 asks for a type (and cue) per concept; v1 answers (plain strings) still parse


@dataclass
class LLMSplitter:
    """Split with a chat model: any object with `.chat(conversations, max_new_tokens) -> list[str]` (the
    `ChatBackend`s of `negation_encoder.data.llm`: local transformers or an OpenAI-compatible server), or
    a `PromptedLLM` wrapping one. The prompt is a versioned package file; a malformed answer falls back
    to the rules, and `fallbacks` counts those."""

    chat: object
    prompt_version: str = LLM_PROMPT_VERSION
    fallback: RuleSplitter = field(default_factory=RuleSplitter)
    fallbacks: int = 0
    max_new_tokens: int = 160
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def backend(self):
        return getattr(self.chat, "chat_backend", self.chat)

    @property
    def name(self) -> str:
        return f"llm:{getattr(self.chat, 'name', type(self.chat).__name__)}:{self.prompt_version}"

    def split(self, text: str) -> NegationSplit:
        return self.split_batch([text])[0]

    def split_batch(self, texts: Sequence[str]) -> list[NegationSplit]:
        from ..prompt_files import load_prompt

        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            template = load_prompt("split_negation", self.prompt_version)
            convs = [[{"role": "user", "content": template.format(caption=t)}] for t in todo]
            for t, answer in zip(todo, self.backend.chat(convs, max_new_tokens=self.max_new_tokens), strict=True):
                parsed = parse_split_answer(t, answer)
                if parsed is None:
                    self.fallbacks += 1
                    parsed = self.fallback.split(t)
                self._cache[t] = parsed
        return [self._cache[t] for t in texts]


def _json_objects(answer: str):
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", answer):
        try:
            obj, _ = decoder.raw_decode(answer, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


def _concept_from_answer(item: object) -> NegatedConcept | None:
    """A v1 string or a v2 {"concept", "type", "cue"} object; None if malformed."""
    if isinstance(item, str):
        return NegatedConcept(item.strip()) if item.strip() else None
    if not isinstance(item, dict):
        return None
    text, kind, cue = item.get("concept", item.get("text")), item.get("type", "object"), item.get("cue", "")
    if not isinstance(text, str) or not text.strip() or kind not in NEGATION_TYPES or not isinstance(cue, str):
        return None
    return NegatedConcept(text.strip(), kind, cue.strip().lower())


def _cue_before(text: str, concept: str) -> str:
    """The lexicon's cue nearest before where the concept is said (for answers that name no cue)."""
    found = _cue_occurrences(text)
    at = text.lower().find(concept.lower().split()[0]) if concept.split() else -1
    before = [cue for start, cue in found if at < 0 or start < at]
    return before[-1] if before else (found[0][1] if found else "")


def parse_split_answer(text: str, answer: str | None) -> NegationSplit | None:
    """The first JSON object {"affirmative": str, "negated": [...]} in a model's answer, else None.

    "negated" holds strings (prompt v1: typed "object") or {"concept", "type", "cue"} objects (v2); one
    malformed entry or unknown type makes the whole answer malformed. An affirmative that names nothing
    ("", "a photo", "an image") becomes `EMPTY_AFFIRMATIVE`, so the bare-negation rule reads LLM and rule
    splits alike; cues the model does not give come from the lexicon (`find_cues`)."""
    if not answer:
        return None
    for obj in _json_objects(answer):
        aff, neg = obj.get("affirmative"), obj.get("negated")
        if not isinstance(aff, str) or not isinstance(neg, list):
            continue
        concepts = [_concept_from_answer(x) for x in neg]
        if any(c is None for c in concepts):
            return None
        if not concepts:
            return NegationSplit(text, text.strip())
        if not [w for w in _tokenise(aff).low if w not in _STOP and w not in _PUNCT]:
            aff = EMPTY_AFFIRMATIVE
        per = tuple(c.cue or _cue_before(text, c.text) for c in concepts)
        cues = tuple(dict.fromkeys(c for c in per if c)) or tuple(find_cues(text))
        return NegationSplit(text, aff.strip(), tuple(c.text for c in concepts), cues,
                             tuple(c.type for c in concepts), per)
    return None

