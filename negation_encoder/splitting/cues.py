"""The cue lexicon and lexicalised negation (see the package docstring)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .tokens import _ARTICLES, _SENTENCE_END, _normalise, _Text, _tokenise

# The cue lexicon: words and phrases that can mark negation in a caption. "n't" stands for every
# contraction ending in it (isn't, doesn't, ...).
NEGATION_CUES: tuple[str, ...] = (
    "no", "not", "without", "none", "never", "nor", "nothing", "nobody", "neither", "lacking", "lacks", "lack",
    "free of", "devoid of", "absent", "missing", "except", "isn't", "aren't", "doesn't", "don't", "wasn't",
    "weren't", "cannot", "can't", "n't",
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
          ("without", "a", "doubt"), ("not", "merely"))
# "no more than two cups" counts the cups, "no bigger than a cat" sizes the dog: comparatives bound a
# quantity or a degree, they never say something is absent
_COMPARATIVE_QUANTITIES = frozenset({"more", "less", "fewer"})
_TITLE_CUES = frozenset({"No", "Not", "Never", "Nothing", "None", "Nobody"})
_HYPHEN_CUES = frozenset({"no", "not", "never", "none", "nothing"})


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
    return any(t.low[k: k + len(f)] == f for f in _FIXED) or _comparative(t, k)


def _comparative(t: _Text, k: int) -> bool:
    """'no more than', 'not fewer than', 'nothing less than', 'no bigger than'."""
    w, nxt = t.at(k), t.at(k + 1)
    if t.at(k + 2) != "than" or w not in ("no", "not", "nothing"):
        return False
    return nxt in _COMPARATIVE_QUANTITIES or (w == "no" and len(nxt) > 3 and nxt.endswith("er"))


def _lexicalised(t: _Text) -> frozenset[int]:
    """Indices of tokens whose cue words name rather than negate (see the package docstring)."""
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

