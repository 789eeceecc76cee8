"""Negation cues and the negation splitter: one module for every "does this text negate, and what?".

The cue lexicon (`NEGATION_CUES`, `find_cues`, `has_negation_cue`, `cue_matcher`) is what data
validation, eval_seg's negation subset and the testbed's corpus statistics check; the splitter turns a
caption into its affirmative part and its negated concepts. Nothing else in the codebase lists cues.

Training-free rivals of a negation-aware encoder (SpaceVLM's split scoring; LLM-grounded Diffusion's
and NPC's negative prompts) all start by splitting "a street with no cars" into "a street" and
["cars"]. The split scorer, the text-to-image negative-prompt arm, the integrations' routes and the
trainer's loss eligibility import this module, so every route reads a caption the same way.

Lexicalised negation is not negation, for the lexicon and the splitter alike (one function decides):
signs and names ("a no entry sign", "a no parking zone", "a not-for-sale tag", a capitalised "No" inside
a title, anything quoted or after "says"/"reads"), fixed phrases ("nothing but sand", "not only") and
"non-"/"un-" words (never cues: the lexicon matches whole words). `cue_matcher(custom_cues)` keeps plain
whole-word matching: a user's own list means exactly its words.

`RuleSplitter`'s scope rules (each negation removes a span of the caption and names concepts):

- a determiner cue ("no", "nor"), a preposition cue ("without", "lacking", "free of", "devoid of") and
  "there is no" negate one noun phrase, or a list of them ("no cars, buses or bikes", "neither X nor
  Y", "no cars and buses": a bare noun after "and" continues the list, "and a bus" affirms a bus);
- the noun phrase keeps "of", "with", "for" and "to" complements ("no cup of tea") and ends before
  whatever follows it: a place, time or manner modifier ("at sunset", "on the table", "riding a bike",
  "slowly", "today"), a relative clause or a new clause. What follows stays in the affirmative part: it
  is read as describing the affirmed subject ("a boy without a hat riding a bike" -> "a boy riding a
  bike"). When the negation opened the sentence, a left-over leading preposition goes, so the place
  becomes the affirmed subject ("neither a fork nor a knife on the plate" -> "the plate");
- scene fillers after a negated phrase ("here", "at all", "in sight", "in the picture", "on it") go with
  the negation; so do the connectors that only served it ("with", "and", "that does", ", but");
- "not"/"n't"/"never" read what follows: a determiner -> an object ("not a cat"); a preposition -> a
  relation, named with its subject ("a cat not on the sofa" -> "cat on the sofa"), because "on the sofa"
  alone names nothing a negative prompt or a concept embedding could use; a verb ("not running",
  "doesn't bark") -> an action, the verb phrase alone ("wearing a hat"), as Neg Score questions ask it
  of the subject; an adjective ("the cup that is not red", "the dog isn't brown", "a not white cat")
  -> an attribute, named with its noun ("red cup") for the same reason as relations;
- a negated noun phrase whose head noun the affirmative part also names is an attribute negation
  ("a cup, but not the red one" -> "red cup"; "not the red cup, the other cup"): the thing is there,
  one of its kinds is not;
- "except": "everything"/"all"/"anything" before it affirms nothing depictable and goes with the
  negation ("a fruit bowl with everything except grapes" -> "a fruit bowl", ["grapes"]); a real noun
  phrase stays ("all the chairs except the red one" -> "all the chairs", ["red chairs"]);
- "none of the X are P" affirms the X and negates P of them; "none of the X" alone negates the X;
- "nobody"/"no one" negate "people", "nothing" negates "objects";
- postfix cues ("X is missing", "with the X missing", "X is absent from ...") negate the phrase before
  them; "from PLACE" names the affirmed place when the negation opened the sentence ("A chair is missing
  from this room" -> "this room"), and goes with the negation otherwise;
- "not X but Y" keeps Y and drops the "but" ("not a cat but a dog" -> "a dog", "a yard with no cats but
  two dogs" -> "a yard with two dogs"); so does "and" before a verbless phrase when the negation took a
  "with" ("a cup with no handle and chipped edges" -> "a cup with chipped edges").

A caption that affirms nothing ("there is no dog", "a photo with no fork here") has the affirmative
part `EMPTY_AFFIRMATIVE`; the trainer reads `has_negation and affirmative == EMPTY_AFFIRMATIVE` as a
bare negation (`NegationSplit.is_bare`).

`LLMSplitter` asks a chat model through the data pipelines' backends (versioned prompt, JSON answer,
the same `NegationSplit` with types) and falls back to the rules when the answer is malformed, counting
how often.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# The cue lexicon: words and phrases that can mark negation in a caption. "n't" stands for every
# contraction ending in it (isn't, doesn't, ...).
NEGATION_CUES: tuple[str, ...] = (
    "no", "not", "without", "none", "never", "nor", "nothing", "nobody", "neither", "lacking", "lacks", "lack",
    "free of", "devoid of", "absent", "missing", "except", "isn't", "aren't", "doesn't", "don't", "wasn't",
    "weren't", "cannot", "can't", "n't",
)
NEGATION_TYPES: tuple[str, ...] = ("object", "attribute", "action", "relation")
EMPTY_AFFIRMATIVE = "a photo"  # what an all-negative caption ("there is no dog") affirms


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
    """Every cue occurrence in `text` (whole words, case-insensitive), in order. With the default
    lexicon, lexicalised occurrences ("a no entry sign", "nothing but sand") are left out, so the
    lexicon and the splitter agree on what negates; a custom list matches its words plainly."""
    if cues is not None:
        return _cue_regex(cues).findall(_normalise(text).lower())
    return [cue for _, cue in _cue_occurrences(text)]


def _cue_occurrences(text: str) -> list[tuple[int, str]]:
    """(character offset, cue) of every default-lexicon cue that is not lexicalised."""
    spans = _lexicalised_spans(text)
    return [(m.start(), m.group(0)) for m in _DEFAULT_CUE_RE.finditer(_normalise(text).lower())
            if not any(a <= m.start() < b for a, b in spans)]


def has_negation_cue(text: str) -> bool:
    """True iff `text` holds a word of the cue lexicon that is not lexicalised negation."""
    return bool(find_cues(text))


def cue_matcher(cues: Iterable[str] | None = None) -> Callable[[str], bool]:
    """A predicate for a custom cue list (e.g. `negenc seg eval --cues`): plain whole words, as the user
    listed them; ValueError if it is empty. None or the lexicon itself (eval_seg passes `NEGATION_CUES`
    as its default): `has_negation_cue`, which leaves lexicalised negation out."""
    cues = None if cues is None else tuple(cues)
    if cues is None or tuple(c.strip().lower() for c in cues) == NEGATION_CUES:
        return has_negation_cue
    rx = _cue_regex(cues)
    return lambda text: bool(rx.search(_normalise(text).lower()))


# ---------------------------------------------------------------------------------------------
# The split


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
    concept."""

    text: str
    affirmative: str
    negated: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    negation_types: tuple[str, ...] = ()
    concept_cues: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.negated)
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
                "is_bare": self.is_bare}

    @classmethod
    def from_dict(cls, d: dict) -> NegationSplit:
        concepts = d.get("concepts") or [{"text": t} for t in d.get("negated", [])]
        return cls(d["text"], d["affirmative"], tuple(c["text"] for c in concepts), tuple(d.get("cues", ())),
                   tuple(c.get("type", "object") for c in concepts), tuple(c.get("cue", "") for c in concepts))


# ---------------------------------------------------------------------------------------------
# Tokens and word classes

_TOKEN_RE = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|[0-9]+(?:\.[0-9]+)?|[^\sA-Za-z0-9]")
_PUNCT = frozenset(",.;:!?()[]\"\u201c\u201d-\u2014")
_SENTENCE_END = frozenset(".!?;:")
_ARTICLES = frozenset({"a", "an", "the"})
_LEADING = _ARTICLES | {"any", "some", "one", "single", "another", "his", "her", "their", "its", "my", "your",
                        "our", "this", "these", "those", "such"}
_COPULAS = frozenset({"is", "are", "was", "were", "be", "being", "been"})
_DO = frozenset({"does", "do", "did"})
_HAVE = frozenset({"has", "have", "had"})
_MODALS = frozenset({"can", "could", "will", "would", "should", "must", "may", "might", "shall"})
_AUX = _DO | _HAVE | _MODALS
_RELATIVES = frozenset({"that", "which", "who", "whose", "whom", "where"})
_COORD = frozenset({"and", "or", "nor", "but", "yet", "while", "whereas", "although", "though", "because"})
_TRANSPARENT = frozenset({"have", "has", "having", "got", "contain", "contains", "containing", "include",
                          "includes", "including", "feature", "features", "featuring", "show", "shows", "showing",
                          "depict", "depicts", "depicting", "display", "displays", "displaying", "see", "with"})
_PREPS = frozenset({"at", "in", "on", "under", "near", "by", "behind", "beside", "during", "inside", "outside",
                    "above", "below", "over", "across", "along", "around", "through", "into", "onto", "against",
                    "among", "amongst", "between", "beneath", "underneath", "atop", "upon", "from", "after",
                    "before", "toward", "towards", "past", "beyond", "within", "amid", "alongside", "throughout",
                    "off", "opposite"})
_PREP_PHRASES = (("in", "front", "of"), ("on", "top", "of"), ("next", "to"), ("close", "to"), ("far", "from"),
                 ("away", "from"), ("out", "of"))
_NP_PREPS = frozenset({"of", "with", "for", "to"})  # complements that stay inside a noun phrase
_POSTURE = frozenset({"sitting", "standing", "lying", "laying", "leaning", "resting", "perched", "hanging",
                      "kneeling", "crouching", "parked", "sleeping", "sit", "stand", "lie", "lean", "rest", "hang"})
_COMPLEMENT_PREPS = frozenset({"at", "to", "with", "into", "onto", "against", "toward", "towards", "for", "about",
                               "over"})
_PARTICLES = frozenset({"up", "down", "away", "out", "back"})
_TIME_WORDS = frozenset({"today", "tonight", "yesterday", "now", "anymore", "again", "outdoors", "indoors",
                         "downstairs", "upstairs", "overhead", "alone", "together"})
_FILLER_WORDS = frozenset({"here", "there", "anywhere", "whatsoever", "visible", "present", "nearby", "around",
                           "left", "either"})
_FILLER_SEQS = (("at", "all"), ("in", "sight"), ("to", "be", "seen"), ("can", "be", "seen"), ("is", "visible"),
                ("are", "visible"), ("is", "present"), ("are", "present"), ("is", "shown"), ("are", "shown"),
                ("at", "the", "moment"))
_META = frozenset({"picture", "pictures", "image", "images", "photo", "photos", "photograph", "scene", "frame",
                   "shot", "view", "pic"})
_PRONOUNS = frozenset({"it", "them", "him", "her", "they", "he", "she", "we", "i", "you", "this", "these", "those"})
_UNIVERSALS = frozenset({"everything", "anything", "all", "everyone", "everybody", "each", "every"})
_ING_NOUNS = frozenset({
    "ring", "string", "king", "wing", "thing", "something", "anything", "everything", "nothing", "ceiling",
    "building", "painting", "clothing", "evening", "morning", "railing", "awning", "icing", "filling", "stuffing",
    "wedding", "pudding", "sibling", "bedding", "lighting", "swing", "spring", "sling", "duckling", "seedling",
    "dumpling", "sapling", "earring", "offspring", "wiring", "siding", "housing", "landing", "opening",
    "frosting", "topping", "dressing", "seasoning", "serving", "stocking", "drawing", "carving", "crossing",
    "lightning", "parking", "ping", "sing", "bring", "sting", "during", "herring"})
_LY_NOUNS = frozenset({"family", "lily", "jelly", "belly", "butterfly", "dragonfly", "firefly", "holly", "rally",
                       "gully", "bully", "ally", "assembly", "supply", "anomaly", "trolly", "doily", "scully",
                       "italy", "july", "sally", "molly", "polly", "billy", "emily"})
_STOP = _LEADING | _COPULAS | _AUX | _RELATIVES | _COORD | _PRONOUNS | _META | _TRANSPARENT | {
    "of", "to", "for", "in", "on", "at", "from", "by", "there", "here", "shown", "nor", "not", "no"}
_DANGLING_END = _COORD | _RELATIVES | _COPULAS | _AUX | _TRANSPARENT | {"of", "there", "also", "just", "nor"}
_DANGLING_START = _COORD | {"also", "just"}

# Lexicalised negation: the words a sign or name puts after "no" ("a no parking zone")
_SIGN_NOUNS = frozenset({"sign", "signs", "signpost", "sticker", "stickers", "symbol", "symbols", "placard",
                         "notice", "tag", "tags", "label", "labels", "logo", "banner", "poster", "zone", "zones"})
_SIGN_WORDS = frozenset({"entry", "entrance", "exit", "access", "admittance", "vacancy", "trespassing", "parking",
                         "smoking", "stopping", "fishing", "swimming", "camping", "littering", "dogs", "pets", "fly",
                         "go", "through", "thru", "left", "right", "u-turn", "turn", "waiting", "photography",
                         "cycling", "skateboarding", "alcohol", "food", "overtaking", "outlet", "loitering",
                         "dumping", "diving", "hunting", "idling"})
_SAY_VERBS = frozenset({"says", "say", "saying", "said", "reads", "reading", "read", "labelled", "labeled",
                        "marked", "stamped", "printed", "written", "titled", "entitled", "called", "named", "spells",
                        "spelling"})
_FIXED = (("nothing", "but"), ("none", "other", "than"), ("not", "only"), ("not", "just"), ("no", "doubt"),
          ("no", "matter"), ("not", "to", "mention"), ("never", "mind"), ("no", "wonder"), ("no", "sooner"),
          ("without", "a", "doubt"))
_TITLE_CUES = frozenset({"No", "Not", "Never", "Nothing", "None", "Nobody"})
_HYPHEN_CUES = frozenset({"no", "not", "never", "none", "nothing"})


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'")


@dataclass(frozen=True)
class _Text:
    """A caption as tokens: original words, lower-cased words and character spans in the caption."""

    raw: str
    words: tuple[str, ...]
    low: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.words)

    def at(self, k: int) -> str:
        return self.low[k] if 0 <= k < len(self.low) else ""

    def slice(self, a: int, b: int) -> str:
        """The caption's own text from token a to token b (exclusive), spacing kept."""
        return self.raw[self.spans[a][0]: self.spans[b - 1][1]] if b > a else ""


def _tokenise(text: str) -> _Text:
    norm = _normalise(text)
    found = list(_TOKEN_RE.finditer(norm))
    words = tuple(m.group(0) for m in found)
    return _Text(norm, words, tuple(w.lower() for w in words), tuple(m.span() for m in found))


def _is_ing(w: str) -> bool:
    return len(w) > 4 and w.endswith("ing") and w not in _ING_NOUNS


def _verb_after_cue(w: str) -> bool:
    """Right after 'not', an -ing word is a verb even when it can be a noun ('a painter not painting')."""
    return len(w) > 4 and w.endswith("ing") and w not in ("something", "anything", "everything", "nothing")


def _is_ly(w: str) -> bool:
    return len(w) > 4 and w.endswith("ly") and w not in _LY_NOUNS


def _is_ed(w: str) -> bool:
    return len(w) > 4 and w.endswith("ed")


def _prep_len(t: _Text, k: int) -> int:
    for phrase in _PREP_PHRASES:
        if t.low[k: k + len(phrase)] == phrase:
            return len(phrase)
    return 1 if t.at(k) in _PREPS else 0


# ---------------------------------------------------------------------------------------------
# Lexicalised negation: one decision for the lexicon and the splitter


def _quoted(t: _Text) -> set[int]:
    """Tokens inside double quotes ("a sign saying "no entry"")."""
    inside, out, depth = False, set(), 0
    for k, w in enumerate(t.words):
        if w == '"':
            inside = not inside
        elif w == "\u201c":
            depth += 1
        elif w == "\u201d":
            depth = max(0, depth - 1)
        elif inside or depth:
            out.add(k)
    return out


def _said(t: _Text, k: int) -> bool:
    """A cue right after a verb of saying or labelling ("a sign that reads no parking")."""
    j = k - 1
    while j >= 0 and t.words[j] in ("'", '"', "\u201c", ":"):
        j -= 1
    return t.at(j) in _SAY_VERBS


def _sign_name(t: _Text, k: int) -> bool:
    """'no' naming a sign or zone: after a determiner ('a no entry sign') or before SIGNWORD [WORD] SIGN."""
    if t.at(k) != "no":
        return False
    if t.at(k - 1) in _ARTICLES | {"its", "their", "his", "her", "our"}:
        return True  # a determiner never precedes the quantifier "no"
    x = t.at(k + 1)
    if t.at(k + 2) in ("allowed", "permitted") and t.at(k + 3) in ("", "sign", "signs", "notice"):
        return True  # the text of a sign: "no dogs allowed"
    return (x in _SIGN_WORDS or x.endswith("ing")) and (t.at(k + 2) in _SIGN_NOUNS or t.at(k + 3) in _SIGN_NOUNS)


def _title(t: _Text, k: int) -> bool:
    """A capitalised cue inside a sentence, before another capitalised word: part of a name or title."""
    if t.words[k] not in _TITLE_CUES or k == 0 or t.words[k - 1] in _SENTENCE_END:
        return False
    nxt = t.words[k + 1] if k + 1 < len(t) else ""
    return nxt[:1].isupper()


def _fixed(t: _Text, k: int) -> bool:
    return any(t.low[k: k + len(f)] == f for f in _FIXED)


def _lexicalised(t: _Text) -> frozenset[int]:
    """Indices of tokens whose cue words name rather than negate (see the module docstring)."""
    out = _quoted(t)
    for k, w in enumerate(t.low):
        if "-" in w and set(w.split("-")) & _HYPHEN_CUES:
            out.add(k)
        elif _sign_name(t, k) or _title(t, k) or _fixed(t, k) or (w in _HYPHEN_CUES and _said(t, k)):
            out.add(k)
    return frozenset(out)


def _lexicalised_spans(text: str) -> list[tuple[int, int]]:
    t = _tokenise(text)
    return [t.spans[k] for k in sorted(_lexicalised(t))]


# ---------------------------------------------------------------------------------------------
# The rule splitter


@dataclass(frozen=True)
class _Scope:
    """One negation read from a caption: the tokens it removes (start..end less `keep`), the connectors
    its left edge took (`lead`), its concepts as (text, type) and its cue."""

    start: int
    end: int
    cue: str
    concepts: tuple[tuple[str, str], ...]
    keep: frozenset[int] = frozenset()
    lead: tuple[int, ...] = ()


def _cue_at(t: _Text, k: int) -> tuple[str, int] | None:
    """(kind, length) of a negation cue starting at token k, before lexicalisation is considered."""
    w, nxt = t.at(k), t.at(k + 1)
    if w == "there" and nxt in _COPULAS and t.at(k + 2) in ("no", "not", "nothing", "nobody"):
        return "exist", 3 if t.at(k + 2) in ("no", "not") else 2
    if (w == "there" and nxt in ("isn't", "aren't", "wasn't", "weren't")) or (w == "there's" and nxt == "no"):
        return "exist", 2
    if (w, nxt) in (("free", "of"), ("devoid", "of"), ("lack", "of")):
        return "prep", 2
    if (w, nxt) == ("none", "of"):
        return "none_of", 2
    if w == "except":
        return "except", 2 if nxt == "for" else 1
    if (w, nxt) == ("no", "one") or w in ("nobody", "nothing"):
        return "pronoun", 2 if w == "no" else 1
    if (w, nxt) == ("no", "longer"):
        return "not", 2
    if w in ("no", "nor"):
        return "det", 1
    if w in ("without", "lacking", "lacks", "lack"):
        return "prep", 1
    if w == "neither":
        return "neither", 1
    if w in ("missing", "absent"):
        return "missing", 1
    if w in ("not", "never", "cannot") or w.endswith("n't"):
        return "not", 1
    return None


class _Reader:
    """Reads the negations of one caption, left to right, into `_Scope`s (see the module docstring)."""

    def __init__(self, t: _Text):
        self.t = t
        self.n = len(t)
        self.blocked = _lexicalised(t)
        self.removed = [False] * self.n

    # ---- token classes
    def cue(self, k: int) -> tuple[str, int] | None:
        return None if k in self.blocked or k >= self.n else _cue_at(self.t, k)

    def punct(self, k: int) -> bool:
        return 0 <= k < self.n and self.t.words[k] in _PUNCT

    def stops(self, k: int) -> bool:
        """A clause or phrase boundary that no scope crosses."""
        w = self.t.at(k)
        return (k >= self.n or self.punct(k) or w in _COORD | _RELATIVES | _COPULAS | _AUX
                or self.cue(k) is not None)

    def filler(self, k: int) -> int:
        """Length of a scene filler at k ("here", "at all", "in the picture", "on it"), else 0."""
        low = self.t.low
        for seq in _FILLER_SEQS:
            if low[k: k + len(seq)] == seq:
                return len(seq)
        w = self.t.at(k)
        if w in ("in", "from", "on", "within", "of"):
            j = k + 1 + (self.t.at(k + 1) in ("the", "this", "that", "any"))
            if self.t.at(j) in _META:
                return j + 1 - k
        if (w in _PREPS or w == "with") and self.t.at(k + 1) in ("it", "them", "him", "her") and self.stops(k + 2):
            return 2
        if (w in _FILLER_WORDS or w in _PREPS) and (self.stops(k + 1) or self.filler(k + 1)):
            return 1  # "no people around", "without any bicycles inside": an adverb, not a place
        return 0

    def fillers(self, k: int) -> int:
        while k < self.n and self.filler(k):
            k += self.filler(k)
        return k

    def trails(self, k: int) -> bool:
        """A word that starts a trailing modifier once a noun phrase has its head."""
        w = self.t.at(k)
        return ((_prep_len(self.t, k) > 0 and w not in _NP_PREPS) or _is_ing(w) or _is_ly(w) or w in _TIME_WORDS
                or self.filler(k) > 0)

    def bare_noun(self, k: int) -> bool:
        """A noun with no determiner ("and buses"): the list of a determiner cue goes on."""
        w = self.t.at(k)
        return (k < self.n and w.isalpha() and not self.stops(k) and w not in _STOP and not self.trails(k)
                and not _is_ed(w))

    # ---- phrase readers: each returns the end (exclusive) of the phrase starting at j
    def noun_phrase(self, j: int) -> int:
        """Up to the head noun and its of/with/for/to complements; a modifier after the head ends it."""
        k, headed = j, False
        while k < self.n and not self.stops(k):
            if headed and self.trails(k):
                break
            if not headed and k > j and _prep_len(self.t, k) and self.t.at(k) not in _NP_PREPS:
                break
            headed = headed or self.t.at(k) not in _LEADING
            k += 1
        return k

    def verb_phrase(self, j: int) -> int:
        """The verb, its object, and a prepositional complement only where the verb takes one ('sitting
        on the mat', 'looking at the camera'); 'running in the park' ends before 'in'."""
        verb, k = self.t.at(j), j + 1
        while self.t.at(k) in _PARTICLES:
            k += 1
        if self.stops(k):
            return k
        plen = _prep_len(self.t, k)
        if plen:
            licensed = verb in _POSTURE or self.t.at(k) in _COMPLEMENT_PREPS
            return self.noun_phrase(k + plen) if licensed else k
        if self.trails(k):
            return k
        return self.noun_phrase(k)

    def prep_phrase(self, j: int) -> int:
        return self.noun_phrase(j + _prep_len(self.t, j))

    def predicate(self, j: int) -> int:
        """Adjectives and participles after 'is not' ('red', 'very bright', 'crowded with cars')."""
        k = j
        while k < self.n and not self.stops(k):
            w, prev = self.t.at(k), self.t.at(k - 1)
            after_participle = k > j and (_is_ed(prev) or prev in ("full", "covered", "made")) and \
                w in ("with", "by", "in", "of", "on")
            if k > j and self.trails(k) and not after_participle and w not in _NP_PREPS:
                break
            if after_participle:
                return self.noun_phrase(k + 1)
            k += 1
        return k

    def items(self, j: int, read: Callable[[int], int], bare_lists: bool = True) -> tuple[list[tuple[int, int]], int]:
        """A list of phrases: 'X or Y', 'X, Y, or Z', 'X nor Y', 'X and Y' (Y bare); fillers after each."""
        spans: list[tuple[int, int]] = []
        k = j
        while True:
            while spans and self.t.at(k) in ("no", "not", "any", "without") and k not in self.blocked:
                k += 1
            end = read(k) if k < self.n else k
            if end <= k:
                break
            spans.append((k, end))
            k = self.fillers(end)
            nxt = self.continuation(k, bare_lists)
            if nxt is None:
                break
            k = nxt
        return spans, k

    def continuation(self, k: int, bare_lists: bool) -> int | None:
        w = self.t.at(k)
        if w in ("or", "nor"):
            return k + 1
        if w == "," and self.list_follows(k, bare_lists):
            return k + 2 if self.t.at(k + 1) in ("or", "nor", "and") else k + 1
        if w == "and" and bare_lists and self.bare_noun(k + 1):
            return k + 1
        return None

    def list_follows(self, comma: int, bare_lists: bool) -> bool:
        """After a comma: the list goes on if 'or'/'nor' closes it, or 'and' closes a list of bare nouns."""
        k, bare = comma + 1, self.bare_noun(comma + 1) or self.t.at(comma + 1) in ("or", "nor")
        while k < self.n and self.t.words[k] not in ".;:!?" and self.t.at(k) not in _RELATIVES | {"but", "with"}:
            w = self.t.at(k)
            if w in ("or", "nor"):
                return True
            if w == "and":
                return bare and bare_lists and self.bare_noun(k + 1)
            if self.cue(k) is not None or w in _COPULAS | _AUX:
                return False
            k += 1
        return False

    # ---- concept text
    def np_text(self, a: int, b: int) -> str:
        while a < b and (self.t.at(a) in _LEADING or self.punct(a)):
            a += 1
        while b > a and self.punct(b - 1):
            b -= 1
        return self.t.slice(a, b)

    def head_before(self, k: int) -> str | None:
        """The noun a predicate or relation talks about: 'the cup that is not red' -> 'cup'."""
        m = k - 1
        while m >= 0 and (self.t.at(m) in _COPULAS | _AUX | _RELATIVES | {"not", ",", "but", "and", "just", "also"}
                          or _is_ly(self.t.at(m))):
            m -= 1
        w = self.t.at(m)
        if m < 0 or self.punct(m) or w in _STOP or self.cue(m) is not None or not w.isalpha():
            return None
        return self.t.words[m]

    def resolve_one(self, concept: str, before: int) -> str:
        """'the red one' -> 'red <noun>' with the last noun said before the negation."""
        words = concept.split()
        if len(words) < 2 or words[-1].lower() != "one":
            return concept
        for m in range(before - 1, -1, -1):
            w = self.t.at(m)
            if w.isalpha() and w not in _STOP and w != "one" and self.cue(m) is None:
                return " ".join([*words[:-1], self.t.words[m]])
        return concept

    # ---- the left edge: connectors that only served the negation
    def left_edge(self, i: int) -> tuple[int, tuple[int, ...]]:
        s = i
        while s > 0 and self.t.at(s - 1) in _AUX | _COPULAS and not self.removed[s - 1]:
            s -= 1
        if s > 0 and self.t.at(s - 1) in _RELATIVES and not self.removed[s - 1]:
            s -= 1
        while s > 0 and self.t.at(s - 1) in ("with", "and", "but", "yet", "also", "just", "though", "or") \
                and not self.removed[s - 1]:
            s -= 1
        if s > 0 and self.t.at(s - 1) == "," and not self.removed[s - 1]:
            s -= 1
        return s, tuple(range(s, i))

    # ---- readers per cue kind
    def read(self, i: int) -> _Scope | None:
        found = self.cue(i)
        if found is None or self.removed[i]:
            return None
        kind, length = found
        reader = {"exist": self.read_exist, "prep": self.read_prefix, "det": self.read_prefix,
                  "none_of": self.read_none_of, "except": self.read_except, "pronoun": self.read_pronoun,
                  "neither": self.read_neither, "missing": self.read_missing, "not": self.read_not}[kind]
        return reader(i, length)

    def object_scope(self, i: int, length: int, j: int, cue: str, start: int | None = None,
                     lead: tuple[int, ...] | None = None) -> _Scope | None:
        spans, end = self.items(j, self.noun_phrase)
        concepts = tuple((self.resolve_one(self.np_text(a, b), i), "object") for a, b in spans)
        concepts = tuple(c for c in concepts if c[0])
        if not concepts:
            return None
        if start is None:
            start, lead = self.left_edge(i)
        return _Scope(start, end, cue, concepts, lead=lead or ())

    def skip_np_lead(self, j: int) -> int:
        """Skip what only carries the negation: 'does not HAVE a', 'not ANY', 'is not SHOWING a', 'A SINGLE'."""
        while True:
            w = self.t.at(j)
            if w in _TRANSPARENT or w in ("any", "single"):
                j += 1
            elif w in ("a", "an", "one") and self.t.at(j + 1) == "single":
                j += 2
            else:
                return j

    def read_prefix(self, i: int, length: int) -> _Scope | None:
        j = i + length
        if self.t.words[i].lower() in ("without", "lacking") and _is_ing(self.t.at(j)) \
                and self.t.at(j) not in _TRANSPARENT:
            return self.action_scope(i, j, self.t.at(i))
        return self.object_scope(i, length, self.skip_np_lead(j), " ".join(self.t.low[i: i + length]))

    def read_exist(self, i: int, length: int) -> _Scope | None:
        j = i + length
        cue = " ".join(self.t.low[i: j])
        if self.t.at(j) in ("nothing", "nobody") or self.t.low[j: j + 2] == ("no", "one"):
            return self.pronoun_scope(i, j, 2 if self.t.at(j) == "no" else 1, cue)
        return self.object_scope(i, length, self.skip_np_lead(j), cue)

    def read_pronoun(self, i: int, length: int) -> _Scope | None:
        return self.pronoun_scope(i, i, length, " ".join(self.t.low[i: i + length]))

    def pronoun_scope(self, i: int, j: int, length: int, cue: str) -> _Scope:
        concept = "objects" if self.t.at(j) == "nothing" else "people"
        start, lead = self.left_edge(i)
        return _Scope(start, self.fillers(j + length), cue, ((concept, "object"),), lead=lead)

    def read_neither(self, i: int, length: int) -> _Scope | None:
        if self.t.at(i - 1) in _COPULAS:  # "the cup is neither red nor blue"
            return self.predicate_scope(i, i + 1, "neither")
        return self.object_scope(i, length, self.skip_np_lead(i + 1), "neither")

    def read_none_of(self, i: int, length: int) -> _Scope | None:
        j = i + length
        np_end = self.noun_phrase(j)
        if np_end == j:
            return None
        if self.t.at(np_end) in _COPULAS:  # "none of the windows are open": the windows are there
            inner = self.predicate_like(i, np_end + 1, "none of", head_at=np_end)
            if inner is not None:
                start, lead = self.left_edge(i)
                return _Scope(start, inner.end, "none of", inner.concepts, keep=frozenset(range(j, np_end)),
                              lead=lead)
        return self.object_scope(i, length, j, "none of")

    def read_except(self, i: int, length: int) -> _Scope | None:
        j = self.skip_np_lead(i + length)
        spans, end = self.items(j, self.noun_phrase)
        concepts = tuple((self.resolve_one(self.np_text(a, b), i), "object") for a, b in spans)
        if not concepts:
            return None
        s = i
        if self.t.at(s - 1) == ",":
            s -= 1
        elif self.t.at(s - 1) in _UNIVERSALS:  # "everything except grapes": "everything" affirms nothing
            s -= 1
            while s > 0 and self.t.at(s - 1) in ("with", "of", "and") and not self.removed[s - 1]:
                s -= 1
        return _Scope(s, end, " ".join(self.t.low[i: i + length]), concepts, lead=tuple(range(s, i)))

    def read_missing(self, i: int, length: int) -> _Scope | None:
        nxt = self.t.at(i + 1)
        postfix = i + 1 >= self.n or self.punct(i + 1) or nxt in _COORD | {"from", "in", "here", "now", "today"}
        if postfix and i > 0 and (self.t.at(i - 1) in _COPULAS or self.t.at(i - 1) not in _STOP):
            return self.postfix_scope(i)
        if self.t.at(i - 1) in _ARTICLES and not self.stops(i + 1):  # "a bike with a missing wheel"
            start, lead = self.left_edge(i - 1)
            return self.object_scope(i, 1, i + 1, self.t.at(i), start, lead)
        prev = self.t.at(i - 1)
        if not self.stops(i + 1) and i > 0 and (prev not in _STOP or prev in _COPULAS):  # "a bike missing a wheel"
            return self.object_scope(i, 1, self.skip_np_lead(i + 1), self.t.at(i))
        return None

    def postfix_scope(self, i: int) -> _Scope | None:
        np_end = i - 1 if self.t.at(i - 1) in _COPULAS else i
        k = np_end
        while k > 0 and not (self.punct(k - 1) or self.removed[k - 1]
                             or self.t.at(k - 1) in _RELATIVES | _COORD | {"with"} or self.cue(k - 1)):
            k -= 1
        concept = self.np_text(k, np_end)
        if not concept:
            return None
        start = k - 1 if self.t.at(k - 1) == "with" else k
        if self.t.at(start - 1) == ",":
            start -= 1
        end = i + 1
        if self.t.at(end) == "from":
            place_end = self.noun_phrase(end + 1)
            meta = all(w in _META or w in _STOP for w in self.t.low[end + 1: place_end])
            if meta or start > 0:
                end = place_end
        return _Scope(start, self.fillers(end), self.t.at(i), ((concept, "object"),), lead=tuple(range(start, k)))

    def not_context(self, i: int) -> str:
        w, prev = self.t.at(i), self.t.at(i - 1)
        if w.endswith("n't"):
            base = w[:-3]
            return ("copula" if base in _COPULAS else "do" if base in _DO or base == "ai" else
                    "have" if base in _HAVE else "modal")
        if w == "cannot":
            return "modal"
        for ctx, words in (("copula", _COPULAS), ("do", _DO), ("have", _HAVE), ("modal", _MODALS)):
            if prev in words:
                return ctx
        return "do" if w == "never" else "plain"

    def read_not(self, i: int, length: int) -> _Scope | None:
        ctx, j, cue = self.not_context(i), i + length, " ".join(self.t.low[i: i + length])
        if ctx == "plain" and self.t.at(i - 1) in _ARTICLES:  # "a not white cat"
            return self.prenominal_scope(i, j, cue)
        w = self.t.at(j)
        if self.stops(j) and w not in _TRANSPARENT:
            return None
        if ctx == "have" and _is_ed(w):  # "has not shaved"
            return self.action_scope(i, j, cue)
        if ctx == "have" or w in _LEADING or w in _TRANSPARENT or w == "single":
            return self.object_scope(i, length, self.skip_np_lead(j), cue)
        if ctx in ("do", "modal") or _verb_after_cue(w):
            return self.action_scope(i, j, cue)
        return self.predicate_like(i, j, cue)

    def predicate_like(self, i: int, j: int, cue: str, head_at: int | None = None) -> _Scope | None:
        """What follows 'is not' / a bare 'not': a relation, an action, an object or an attribute."""
        w = self.t.at(j)
        head = self.head_before(i if head_at is None else head_at)
        if _prep_len(self.t, j):
            spans, end = self.items(j, self.prep_phrase, bare_lists=False)
            concepts = tuple((f"{head} {self.t.slice(a, b)}" if head else self.t.slice(a, b), "relation")
                             for a, b in spans)
            start, lead = self.left_edge(i)
            return _Scope(start, end, cue, concepts, lead=lead) if concepts else None
        if _verb_after_cue(w):
            return self.action_scope(i, j, cue)
        if w in _LEADING:
            return self.object_scope(i, j - i, self.skip_np_lead(j), cue)
        return self.predicate_scope(i, j, cue, head)

    def predicate_scope(self, i: int, j: int, cue: str, head: str | None = None) -> _Scope | None:
        head = head if head is not None else self.head_before(i)
        spans, end = self.items(j, self.predicate, bare_lists=False)
        concepts = []
        for a, b in spans:
            text = self.t.slice(a, b)
            has_prep = any(_prep_len(self.t, k) or self.t.at(k) in _NP_PREPS for k in range(a, b))
            concepts.append((f"{text} {head}" if head and not has_prep else text, "attribute"))
        if not concepts:
            return None
        start, lead = self.left_edge(i)
        return _Scope(start, end, cue, tuple(concepts), lead=lead)

    def action_scope(self, i: int, j: int, cue: str) -> _Scope | None:
        spans, end = self.items(j, self.verb_phrase, bare_lists=False)
        concepts = tuple((self.t.slice(a, b), "action") for a, b in spans)
        if not concepts:
            return None
        start, lead = self.left_edge(i)
        return _Scope(start, end, cue, concepts, lead=lead)

    def prenominal_scope(self, i: int, j: int, cue: str) -> _Scope | None:
        end = j
        while end < self.n and not self.stops(end) and not (end > j + 1 and self.trails(end)) \
                and self.t.at(end) not in _NP_PREPS:
            end += 1
        if end - j < 2:
            return None
        return _Scope(i, end, cue, ((self.t.slice(j, end), "attribute"),), keep=frozenset({end - 1}))

    # ---- a following "but": "not a cat but a dog", "no cats but two dogs"
    def contrast(self, scope: _Scope) -> tuple[list[int], list[int]]:
        """(tokens to remove, lead tokens to restore) for a contrastive 'but' after a scope."""
        e = scope.end
        but = [e, e + 1] if self.t.at(e) == "," and self.t.at(e + 1) == "but" else [e] if self.t.at(e) == "but" else []
        with_lead = [k for k in scope.lead if self.t.at(k) == "with"]
        if not but and self.t.at(e) == "and" and with_lead and self.affirmed_phrase(e + 1):
            return [e], with_lead  # "a cup with no handle and chipped edges" -> "a cup with chipped edges"
        if not but:
            return [], []
        after = but[-1] + 1
        if after >= self.n or self.cue(after) is not None or self.t.at(after) in ("also", "there", "it", "not"):
            return [], []
        if self.t.at(after) in ("with", "is", "are"):
            return but, []
        restore = [k for k in scope.lead if self.t.at(k) in _COPULAS | _RELATIVES | {"with"}]
        if any(self.t.at(k) in _DO | _HAVE | _MODALS for k in scope.lead):
            restore = []
        return but, restore


    def affirmed_phrase(self, k: int) -> bool:
        """A noun phrase that runs to the clause end with no verb of its own ('and chipped edges')."""
        if k >= self.n or self.cue(k) is not None or self.t.at(k) in _PRONOUNS | {"there"}:
            return False
        while k < self.n and self.t.words[k] not in _PUNCT and self.t.at(k) not in _COORD | _RELATIVES:
            if self.t.at(k) in _COPULAS | _AUX or self.cue(k) is not None:
                return False
            k += 1
        return True


def _type_by_shared_head(concepts: list[list[str]], kept_words: set[str]) -> None:
    """An object negation whose head noun the affirmative part names is an attribute negation."""
    for c in concepts:
        words = c[0].lower().split()
        if c[1] == "object" and len(words) >= 2:
            head = words[-1]
            if head in kept_words or head.rstrip("s") in kept_words or head + "s" in kept_words:
                c[1] = "attribute"


class RuleSplitter:
    """Rule-based splitter (deterministic, no model). See the module docstring for the rules."""

    name = "rule"

    def split(self, text: str) -> NegationSplit:
        t = _tokenise(text)
        r = _Reader(t)
        scopes: list[_Scope] = []
        i = 0
        while i < r.n:
            scope = r.read(i)
            if scope is None:
                i += 1
                continue
            for k in range(scope.start, scope.end):
                r.removed[k] = k not in scope.keep
            drop, restore = r.contrast(scope)
            for k in drop:
                r.removed[k] = True
            for k in restore:
                r.removed[k] = False
            scopes.append(scope)
            i = max(scope.end, i + 1)
        if not scopes:
            return NegationSplit(text, text.strip())
        kept = _trim(t, [k for k in range(r.n) if not r.removed[k]], r.removed)
        affirmative = _join(t, kept)
        concepts = [[c, kind, s.cue] for s in scopes for c, kind in s.concepts]
        _type_by_shared_head(concepts, {t.low[k] for k in kept})
        return NegationSplit(text, affirmative, tuple(c[0] for c in concepts), tuple(s.cue for s in scopes),
                             tuple(c[1] for c in concepts), tuple(c[2] for c in concepts))

    def split_batch(self, texts: Sequence[str]) -> list[NegationSplit]:
        return [self.split(t) for t in texts]


def _trim(t: _Text, kept: list[int], removed: list[bool]) -> list[int]:
    """Drop connectors left dangling at either end, and a preposition the negation left in front."""
    while kept and (t.low[kept[-1]] in _DANGLING_END or t.words[kept[-1]] in (",", ";", ":", "-")):
        kept = kept[:-1]
    while kept and (t.low[kept[0]] in _DANGLING_START or t.words[kept[0]] in (",", ";", ":", "-", ".")):
        kept = kept[1:]
    if kept and kept[0] > 0 and all(removed[k] or t.words[k] in _PUNCT for k in range(kept[0])):
        plen = _prep_len(t, kept[0]) or int(t.low[kept[0]] == "with")
        if plen and len(kept) > plen and kept[plen - 1] == kept[0] + plen - 1:
            kept = kept[plen:]
    return kept


def _join(t: _Text, kept: list[int]) -> str:
    """The kept tokens as text: the caption's own spacing inside a kept run, one space between runs."""
    if not [k for k in kept if t.low[k] not in _STOP and t.words[k] not in _PUNCT]:
        return EMPTY_AFFIRMATIVE
    out = ""
    for n, k in enumerate(kept):
        if n and kept[n - 1] == k - 1:
            out += t.raw[t.spans[k - 1][1]: t.spans[k][0]]
        elif n:
            out += " "
        out += t.words[k]
    out = re.sub(r"\s*(?:\(\s*\)|\[\s*\])", "", out)  # brackets the negation emptied
    out = re.sub(r"\s+([,.;:!?)])", r"\1", out)
    out = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", out)
    out = re.sub(r",\s*([.!?])", r"\1", out)
    return out.strip(" ,;:")


_SPLITTERS = {"rule": RuleSplitter}


# ---------------------------------------------------------------------------------------------
# The LLM splitter

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
        from .prompt_files import load_prompt

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


_DEFAULT = RuleSplitter()


def split_negation(text: str) -> NegationSplit:
    """Split one caption with the rule-based splitter."""
    return _DEFAULT.split(text)

