"""Tokens and word classes: what every rule of the splitter and the lexicalised-negation rule read."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# what opens an exception to a negated phrase ("no furniture except a chair": the chair is there)
_EXCEPTIONS = (("except", "for"), ("except",), ("apart", "from"), ("aside", "from"), ("other", "than"), ("besides",))
# irregular past participles: after "never" they tell a history ("never seen before"), not an absence
_PARTICIPLES = frozenset({"seen", "been", "done", "gone", "known", "shown", "heard", "made", "found", "worn",
                          "eaten", "taken", "given", "driven", "ridden", "written", "flown", "grown", "thrown",
                          "broken", "spoken", "stolen", "chosen", "forgotten", "hidden", "told", "sold", "built",
                          "bought", "caught", "taught", "brought", "lost", "met", "kept", "held", "slept", "swum",
                          "sung", "drunk", "begun"})
_TEMPORAL = frozenset({"before", "again", "ever", "once", "yet", "since"})  # "never before", "never again"
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

