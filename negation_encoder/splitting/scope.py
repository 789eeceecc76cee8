"""Where a negation starts and what its phrases span: the cue kinds and the noun-phrase, verb-phrase,
list and left-edge readers that `rules._Reader` builds its scopes from (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cues import _lexicalised
from .tokens import (
    _AUX,
    _COMPLEMENT_PREPS,
    _COORD,
    _COPULAS,
    _EXCEPTIONS,
    _FILLER_SEQS,
    _FILLER_WORDS,
    _LEADING,
    _META,
    _NP_PREPS,
    _PARTICLES,
    _POSTURE,
    _PREPS,
    _PUNCT,
    _RELATIVES,
    _STOP,
    _TIME_WORDS,
    _is_ed,
    _is_ing,
    _is_ly,
    _prep_len,
    _Text,
)


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
    pronoun: bool = False  # "nothing", "nobody", "no one": the concept is everything of a kind


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


class _PhraseReader:
    """One caption's tokens and which of them earlier scopes removed, with the phrase readers every cue kind
    uses; `rules._Reader` adds the readers per cue kind."""

    def __init__(self, t: _Text):
        self.t = t
        self.n = len(t)
        self.blocked = _lexicalised(t)
        self.removed = [False] * self.n
        self.unsure: str | None = None  # why a cue's scope cannot be read: the caption stays whole
        self.say: dict[int, str] = {}  # kept tokens the affirmative part says as another word

    # ---- token classes
    def cue(self, k: int) -> tuple[str, int] | None:
        return None if k in self.blocked or k >= self.n else _cue_at(self.t, k)

    def punct(self, k: int) -> bool:
        return 0 <= k < self.n and self.t.words[k] in _PUNCT

    def stops(self, k: int) -> bool:
        """A clause or phrase boundary that no scope crosses."""
        w = self.t.at(k)
        return (k >= self.n or self.punct(k) or w in _COORD | _RELATIVES | _COPULAS | _AUX
                or self.cue(k) is not None or self.exception(k) > 0)

    def exception(self, k: int) -> int:
        """Length of an exception marker at k ("except", "except for", "apart from", "other than"), else 0."""
        return next((len(e) for e in _EXCEPTIONS if self.t.low[k: k + len(e)] == e), 0)

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

    def lone_noun(self, k: int) -> bool:
        """A bare noun that is the whole noun phrase ("and buses", "and knives on the table"); a word before
        another noun modifies it ("and green trees"): that phrase has its own modifiers, so it is affirmed."""
        nxt = k + 1
        return self.bare_noun(k) and (self.stops(nxt) or self.trails(nxt) or self.t.at(nxt) in _NP_PREPS)

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
        if w == "and" and bare_lists and self.lone_noun(k + 1):
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
