"""Negation cues and the negation splitter: one module for every "does this text negate, and what?".

The cue lexicon (`NEGATION_CUES`, `find_cues`, `has_negation_cue`, `cue_matcher`) is what data
validation, eval_seg's negation subset and the testbed's corpus statistics check; the splitter turns a
caption into its affirmative part and its negated concepts. Nothing else in the codebase lists cues.


Training-free rivals of a negation-aware encoder (SpaceVLM's split scoring; LLM-grounded Diffusion's
and NPC's negative prompts) all start by splitting "a street with no cars" into "a street" and
["cars"]. The split scorer (`negation_encoder.split_scorer`) and the text-to-image negative-prompt
arm (`eval_t2i`) import this module, so both routes read a caption the same way.

`RuleSplitter` finds cue words and their scope with a few English rules:

- prefix cues ("no", "not", "without", "never", "neither ... nor", "lacking", "free of", "devoid of",
  "isn't", "doesn't", "does not have/contain/include/feature/show", "there is no") negate the phrase
  after them, up to a clause boundary (punctuation, "but", "and a ...", a relative pronoun);
- lists stay together: "no X or Y", "neither X nor Y", "without a hat, glasses, or tie";
- postfix cues ("X is missing", "X is absent from", "with the X missing") negate the phrase before them;
- attributes: "the cup that is not red" negates "red cup"; "a not white cat" -> "a cat" minus "white cat";
- scene fillers ("here", "at all", "in sight", "in the picture") and leading determiners are dropped
  from a concept, and connectors that only served the negation ("with", "that does") from the rest.

`LLMSplitter` asks a chat model through the data pipelines' backends (versioned prompt, JSON answer)
and falls back to the rules when the answer is malformed, counting how often.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# The cue lexicon: words and phrases that can mark negation in a caption. "n't" stands for every
# contraction ending in it (isn't, doesn't, ...).
NEGATION_CUES: tuple[str, ...] = (
    "no", "not", "without", "none", "never", "nor", "nothing", "neither", "lacking", "lacks", "free of",
    "absent", "missing", "isn't", "aren't", "doesn't", "don't", "wasn't", "weren't", "cannot", "can't", "n't",
)


def _cue_regex(cues: Iterable[str]) -> re.Pattern:
    cues = [c.strip().lower() for c in cues if c.strip()]
    if not cues:
        raise ValueError("expected at least one negation cue, got none")
    words = [re.escape(c) for c in sorted(cues, key=len, reverse=True) if c != "n't"]
    parts = ([r"(?<![\w'])(?:" + "|".join(words) + r")(?![\w'])"] if words else []) + \
        ([r"\w*n't\b"] if "n't" in cues else [])
    return re.compile("|".join(parts))


_DEFAULT_CUE_RE = _cue_regex(NEGATION_CUES)


def find_cues(text: str, cues: Iterable[str] | None = None) -> list[str]:
    """Every cue occurrence in `text` (whole words, case-insensitive), in order."""
    rx = _DEFAULT_CUE_RE if cues is None else _cue_regex(cues)
    return rx.findall(text.lower())


def has_negation_cue(text: str) -> bool:
    """True iff `text` holds a word of the cue lexicon."""
    return bool(_DEFAULT_CUE_RE.search(text.lower()))


def cue_matcher(cues: Iterable[str] | None = None) -> Callable[[str], bool]:
    """A predicate for a custom cue list (e.g. `negenc seg eval --cues`); ValueError if it is empty."""
    rx = _DEFAULT_CUE_RE if cues is None else _cue_regex(cues)
    return lambda text: bool(rx.search(text.lower()))


EMPTY_AFFIRMATIVE = "a photo"  # what an all-negative caption ("there is no dog") affirms

_TOKEN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|[0-9]+(?:\.[0-9]+)?|[^\sA-Za-z0-9]")
_PUNCT = set(",.;:!?()[]\"")
_DETERMINERS = {"a", "an", "the", "any", "some", "one", "single", "another"}
_COPULAS = {"is", "are", "was", "were", "be", "being"}
_AUX = {"does", "do", "did", "has", "have", "had", "can", "could", "will", "would", "should"}
_RELATIVES = {"that", "which", "who", "whose", "where", "while", "whereas"}
_TRANSPARENT_VERBS = {"have", "has", "having", "contain", "contains", "containing", "include", "includes",
                      "including", "feature", "features", "featuring", "show", "shows", "showing", "depict",
                      "depicts", "depicting", "display", "displaying", "see", "there"}
_FILLERS = ("at all", "in sight", "anywhere", "whatsoever", "here", "there", "visible", "present", "around it")
_PLACE_NOUNS = {"picture", "image", "photo", "photograph", "scene", "frame", "shot", "view"}
_PREFIX_CUES = (  # longest first; each is a tuple of lower-cased tokens
    ("there", "is", "no"), ("there", "are", "no"), ("there", "isn't", "any"), ("there", "aren't", "any"),
    ("there", "isn't", "a"), ("there", "isn't", "an"), ("there", "is", "not", "a"), ("there", "is", "not", "an"),
    ("free", "of"), ("devoid", "of"), ("none", "of"),
    ("without",), ("no",), ("not",), ("never",), ("neither",), ("lacking",), ("lacks",), ("lack",),
    ("isn't",), ("aren't",), ("doesn't",), ("don't",), ("didn't",), ("wasn't",), ("weren't",), ("hasn't",),
    ("haven't",), ("cannot",), ("can't",), ("nor",), ("missing",), ("absent",),
)
_POSTFIX_CUES = {"missing", "absent", "gone"}
_STOP = _DETERMINERS | _COPULAS | _AUX | _RELATIVES | {
    "of", "with", "and", "or", "but", "in", "on", "at", "to", "from", "by", "this", "it", "its", "there", "here",
    "image", "picture", "photo", "scene", "shows", "showing", "features", "feature", "an", "that"}


@dataclass(frozen=True)
class NegationSplit:
    """What a caption affirms and what it negates. `affirmative` is the caption itself when nothing is
    negated, and `EMPTY_AFFIRMATIVE` when everything is ("there is no dog")."""

    text: str
    affirmative: str
    negated: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    negation_types: tuple[str, ...] = ()  # per negated concept: object | attribute | action

    @property
    def has_negation(self) -> bool:
        return bool(self.negated)

    def to_dict(self) -> dict:
        return {"text": self.text, "affirmative": self.affirmative, "negated": list(self.negated),
                "cues": list(self.cues), "negation_types": list(self.negation_types)}


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _match_cue(low: list[str], i: int) -> tuple[str, ...] | None:
    for cue in _PREFIX_CUES:
        if tuple(low[i: i + len(cue)]) == cue:
            return cue
    return None


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w.lower() not in _STOP and w not in _PUNCT]


def _strip_fillers(words: list[str]) -> list[str]:
    """Drop trailing scene fillers ('here', 'at all', 'in the picture') and leading determiners."""
    changed = True
    while changed and words:
        changed = False
        low = [w.lower() for w in words]
        for filler in _FILLERS:
            f = filler.split()
            if len(low) > len(f) and low[-len(f):] == f:
                words, changed = words[: -len(f)], True
                break
        low = [w.lower() for w in words]
        # "... in the picture", "... from this image", "... in the scene"
        if len(low) >= 3 and low[-1] in _PLACE_NOUNS and low[-2] in ("the", "this", "that") \
                and low[-3] in ("in", "from", "of", "on"):
            words, changed = words[:-3], True
    while words and words[0].lower() in _DETERMINERS | {"of"}:
        words = words[1:]
    return words


class RuleSplitter:
    """Rule-based splitter (deterministic, no model). See the module docstring for the rules."""

    name = "rule"

    def split(self, text: str) -> NegationSplit:
        toks = _tokens(text)
        low = [t.lower() for t in toks]
        removed = [False] * len(toks)
        negated: list[str] = []
        kinds: list[str] = []
        cues: list[str] = []
        i = 0
        while i < len(toks):
            postfix_position = i + 1 == len(toks) or toks[i + 1] in _PUNCT or low[i + 1] in ("from", "in", "here")
            if low[i] in _POSTFIX_CUES and i > 0 and postfix_position and \
                    (low[i - 1] in _COPULAS or self._after_np(low, i)):
                span = self._postfix(low, i)
                if span is not None:
                    start, np_start, np_end, end = span
                    concept = " ".join(_strip_fillers(toks[np_start:np_end]))
                    if concept:
                        negated.append(concept)
                        kinds.append("object")
                        cues.append(low[i])
                        for k in range(start, end):
                            removed[k] = True
                    i = end
                    continue
            cue = _match_cue(low, i)
            if cue is None or removed[i]:
                i += 1
                continue
            concepts, start, end, kind = self._prefix(toks, low, i, cue)
            if not concepts:
                i += len(cue)
                continue
            cues.append(" ".join(cue))
            for c in concepts:
                negated.append(c)
                kinds.append(kind)
            for k in range(start, end):
                removed[k] = True
            if kind == "prenominal":  # "a not white cat": keep the head noun in the affirmative
                removed[end - 1] = False
                kinds[-1] = "attribute"
            i = end
        if not negated:
            return NegationSplit(text, text.strip())
        kept = [t for t, r in zip(toks, removed, strict=True) if not r]
        return NegationSplit(text, _clean(kept), tuple(negated), tuple(cues), tuple(kinds))

    def split_batch(self, texts: Sequence[str]) -> list[NegationSplit]:
        return [self.split(t) for t in texts]

    # ---- prefix cues
    def _prefix(self, toks: list[str], low: list[str], i: int, cue: tuple[str, ...]):
        start = self._left_edge(low, i)
        j = i + len(cue)
        kind = "object"
        # "not" after a determiner inside a noun phrase: "a not white cat"
        if cue == ("not",) and i > 0 and low[i - 1] in ("a", "an", "the"):
            end = j
            while end < len(toks) and toks[end] not in _PUNCT and low[end] not in _RELATIVES | {"and", "or", "but", "with"}:
                end += 1
            words = toks[j:end]
            if len(words) >= 2:
                return [" ".join(words)], i, end, "prenominal"
        # skip what only carries the negation: "does not HAVE a", "not ANY", "is not SHOWING a", "without any"
        while j < len(toks) and low[j] in _TRANSPARENT_VERBS | {"any", "is", "are", "a", "an", "the", "one", "single",
                                                               "contain", "with"}:
            if low[j] in ("a", "an", "the", "one", "single", "any") and j + 1 < len(toks) and toks[j + 1] not in _PUNCT:
                break
            j += 1
        skipped = j > i + len(cue)
        copula_attr = not skipped and cue in (("not",), ("isn't",), ("aren't",), ("wasn't",), ("weren't",)) and (
            cue != ("not",) or (i > 0 and low[i - 1] in _COPULAS))
        concepts: list[str] = []
        end = j
        while True:
            k = end
            while k < len(toks) and not self._boundary(low, k, toks):
                k += 1
            # "not crowded with cars", "not filled with coffee": the participle keeps its "with"
            if k < len(toks) and low[k] == "with" and k - end == 1 and low[end].endswith(("ed", "ing")):
                k += 1
                while k < len(toks) and not self._boundary(low, k, toks):
                    k += 1
            words = _strip_fillers(list(toks[end:k]))
            if words:
                concepts.append(" ".join(words))
            end = k
            # lists: "no X or Y", "neither X nor Y", "without a hat, glasses, or tie"
            if end < len(toks) and low[end] in ("or", "nor"):
                end += 1
                continue
            if end < len(toks) and toks[end] == "," and self._list_follows(low, toks, end):
                end += 1
                if end < len(toks) and low[end] in ("or", "nor", "and"):
                    end += 1
                continue
            break
        if not concepts:
            return [], i, i, kind
        if copula_attr and len(concepts) == 1 and len(concepts[0].split()) == 1 and \
                low[j] not in _DETERMINERS:
            subject = self._subject_head(low, toks, i)
            kind = "action" if concepts[0].lower().endswith("ing") else "attribute"
            if subject and kind == "attribute":
                concepts = [f"{concepts[0]} {subject}"]
        elif len(concepts) == 1 and concepts[0].split()[0].lower().endswith("ing") and cue == ("not",):
            kind = "action"
        concepts = [self._resolve_one(c, low, toks, start) for c in concepts]
        return concepts, start, end, kind

    @staticmethod
    def _after_np(low: list[str], i: int) -> bool:
        return i > 0 and low[i - 1] not in _PUNCT and low[i - 1] not in _STOP

    @staticmethod
    def _boundary(low: list[str], k: int, toks: list[str]) -> bool:
        w = low[k]
        if toks[k] in _PUNCT or w in ("but", "or", "nor") or w in _RELATIVES:
            return True
        if w == "and":  # "no cup and a fork": a new, affirmed phrase; "no cup and no fork": a new cue
            return True
        if w in ("with", "while") and k > 0:
            return True
        return _match_cue(low, k) is not None

    @staticmethod
    def _list_follows(low: list[str], toks: list[str], comma: int) -> bool:
        """After a comma: a list continues if an 'or'/'nor' item closes it before the clause ends."""
        k = comma + 1
        while k < len(toks) and toks[k] not in ".;:!?" and low[k] not in _RELATIVES | {"but", "with"}:
            if low[k] in ("or", "nor"):
                return True
            if _match_cue(low, k) is not None or low[k] in _COPULAS | _AUX:
                return False
            k += 1
        return False

    @staticmethod
    def _left_edge(low: list[str], i: int) -> int:
        """Pull in what only served the negation: 'with no', ', but not', 'that does not', 'and no'."""
        s = i
        while s > 0 and low[s - 1] in _AUX | _COPULAS:
            s -= 1
        if s > 0 and low[s - 1] in _RELATIVES:
            s -= 1
        while s > 0 and low[s - 1] in ("with", "and", "but", "yet", "also", "just", "though", "or"):
            s -= 1
        if s > 0 and low[s - 1] == ",":
            s -= 1
        return s

    @staticmethod
    def _subject_head(low: list[str], toks: list[str], i: int) -> str | None:
        """The noun a copular negation talks about: 'the cup that is not red' -> 'cup'."""
        k = i - 1
        while k >= 0 and (low[k] in _COPULAS | _AUX | _RELATIVES or low[k] == "not"):
            k -= 1
        while k >= 0 and toks[k] in _PUNCT:
            k -= 1
        return toks[k] if k >= 0 and low[k] not in _STOP else None

    @staticmethod
    def _resolve_one(concept: str, low: list[str], toks: list[str], start: int) -> str:
        """'not the red one' -> 'red <noun>' with the noun the phrase refers back to."""
        words = concept.split()
        if words and words[-1].lower() == "one" and len(words) > 1:
            nouns = [t for t, w in zip(toks[:start], low[:start], strict=True)
                     if w not in _STOP and t not in _PUNCT and w != "one"]
            if nouns:
                return " ".join(words[:-1] + [nouns[-1]])
        return concept

    # ---- postfix cues
    @staticmethod
    def _postfix(low: list[str], i: int):
        """'X is missing (from ...)', 'with the X missing' -> (remove_start, np_start, np_end, remove_end)."""
        np_end = i - 1 if low[i - 1] in _COPULAS else i
        k = np_end
        while k > 0 and low[k - 1] not in _PUNCT and low[k - 1] not in _RELATIVES | {"with", "and", "but", "while"}:
            k -= 1
        np_start = k
        if np_start >= np_end:
            return None
        start = np_start - 1 if np_start > 0 and low[np_start - 1] == "with" else np_start
        if start > 0 and low[start - 1] == ",":
            start -= 1
        end = i + 1
        if end < len(low) and low[end] == "from":  # "... is absent from this picture"
            end += 1
            while end < len(low) and low[end] not in _PUNCT:
                end += 1
        return start, np_start, np_end, end


def _clean(tokens: list[str]) -> str:
    """Join kept tokens; drop dangling connectors; an all-negative caption affirms `EMPTY_AFFIRMATIVE`."""
    while tokens and (tokens[-1].lower() in ("with", "and", "but", "or", "that", "which", "of", "there", "is", "are")
                      or tokens[-1] in ",;:"):
        tokens = tokens[:-1]
    while tokens and (tokens[0] in ",;:" or tokens[0].lower() in ("and", "but", "or")):
        tokens = tokens[1:]
    text = " ".join(tokens)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"([(])\s+", r"\1", text)
    text = re.sub(r",\s*([,.])", r"\1", text).strip(" ,;:")
    return text if _content(tokens) else EMPTY_AFFIRMATIVE


_SPLITTERS = {"rule": RuleSplitter}


@dataclass
class LLMSplitter:
    """Split with a chat model (any `ChatBackend` of `negation_encoder.data.llm`: local transformers or an
    OpenAI-compatible server). The prompt is a versioned package file; a malformed answer falls back to
    the rules, and `fallbacks` counts those."""

    chat: object
    prompt_version: str = "v1"
    fallback: RuleSplitter = field(default_factory=RuleSplitter)
    fallbacks: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"llm:{getattr(self.chat, 'name', type(self.chat).__name__)}:{self.prompt_version}"

    def split(self, text: str) -> NegationSplit:
        return self.split_batch([text])[0]

    def split_batch(self, texts: Sequence[str]) -> list[NegationSplit]:
        from .prompt_files import load_prompt

        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            template = load_prompt("split_negation", self.prompt_version)
            convs = [[{"role": "user", "content": template.format(caption=t)}] for t in todo]
            for t, answer in zip(todo, self.chat.chat(convs, max_new_tokens=96), strict=True):
                parsed = parse_split_answer(t, answer)
                if parsed is None:
                    self.fallbacks += 1
                    parsed = self.fallback.split(t)
                self._cache[t] = parsed
        return [self._cache[t] for t in texts]


def parse_split_answer(text: str, answer: str | None) -> NegationSplit | None:
    """The first JSON object {"affirmative": str, "negated": [str, ...]} in a model's answer, else None."""
    if not answer:
        return None
    for match in re.finditer(r"\{[^{}]*\}", answer, re.S):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        aff, neg = obj.get("affirmative"), obj.get("negated")
        if isinstance(aff, str) and isinstance(neg, list) and all(isinstance(x, str) for x in neg):
            neg = tuple(x.strip() for x in neg if x.strip())
            return NegationSplit(text, aff.strip() or EMPTY_AFFIRMATIVE if neg else text.strip(), neg,
                                 negation_types=("object",) * len(neg))
    return None


_DEFAULT = RuleSplitter()


def split_negation(text: str) -> NegationSplit:
    """Split one caption with the rule-based splitter."""
    return _DEFAULT.split(text)


def negative_prompt_pair(text: str, splitter: RuleSplitter | LLMSplitter | None = None) -> tuple[str, str | None]:
    """(prompt, negative_prompt) for a text-to-image pipeline: the affirmative part, and the negated
    concepts joined by commas (None when the prompt negates nothing)."""
    s = (splitter or _DEFAULT).split(text)
    if not s.has_negation:
        return text, None
    return s.affirmative, ", ".join(s.negated)
