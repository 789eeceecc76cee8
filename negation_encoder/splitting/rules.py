"""The rule splitter: one scope per negation, read left to right (see the package docstring)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .scope import _PhraseReader, _Scope
from .tokens import (
    _ARTICLES,
    _AUX,
    _COORD,
    _COPULAS,
    _DANGLING_END,
    _DANGLING_START,
    _DO,
    _HAVE,
    _LEADING,
    _META,
    _MODALS,
    _NP_PREPS,
    _PARTICIPLES,
    _PRONOUNS,
    _PUNCT,
    _RELATIVES,
    _STOP,
    _TEMPORAL,
    _TRANSPARENT,
    _UNIVERSALS,
    _is_ed,
    _is_ing,
    _prep_len,
    _Text,
    _tokenise,
    _verb_after_cue,
)
from .types import EMPTY_AFFIRMATIVE, NegationSplit

_Edit = tuple[list[int], list[int], dict[int, str]]  # tokens to remove, to restore, to say as another word


class _Reader(_PhraseReader):
    """Reads the negations of one caption, left to right, into `_Scope`s (see the package docstring)."""

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

    def pronoun_scope(self, i: int, j: int, length: int, cue: str) -> _Scope | None:
        """'nothing' negates objects, 'nobody'/'no one' people, with what follows the pronoun: a filler or a
        clause end ('a tray with nothing on it'); a place, which names where when something is affirmed
        before ('a kitchen with nothing on the counter' -> 'a kitchen' minus 'objects on the counter') and
        is the affirmed place when the negation opens the caption ('nothing is on the table' -> 'the
        table'); an -ing verb phrase ('nobody sitting on it'); the rest of a relative clause whose subject
        it is ('a bed that nobody has slept in'). Anything else is unsure: the caption stays whole."""
        concept = "objects" if self.t.at(j) == "nothing" else "people"
        start, lead = self.left_edge(i)
        end = self.fillers(j + length)
        if self.t.at(end) in _COPULAS:
            end = self.fillers(end + 1)  # "nothing is on the table", "nobody is here"
        w = self.t.at(end)
        plen = _prep_len(self.t, end)
        if plen and w not in _NP_PREPS and not self.filler(end):
            if _prep_len(self.t, end + plen) or self.stops(end + plen):  # "nobody around at dusk": an adverb
                return _Scope(start, end + plen, cue, ((concept, "object"),), lead=lead, pronoun=True)
            if self.opening(start):
                return _Scope(start, end, cue, ((concept, "object"),), lead=lead, pronoun=True)
            place = self.prep_phrase(end)
            if not set(self.t.low[end + plen: place]) <= _PRONOUNS | _LEADING:  # "on top of it" names no place
                concept = f"{concept} {self.t.slice(end, place)}"
            end = self.fillers(place)
        elif _verb_after_cue(w):
            verb = self.verb_phrase(end)
            concept = f"{concept} {self.t.slice(end, verb)}"
            end = self.fillers(verb)
        elif not self.stops(end) or w in _COPULAS | _AUX:
            if self.t.at(i - 1) not in _RELATIVES:
                said = f"'{self.t.slice(j, j + length)}' before '{self.t.words[end]}'"
                self.unsure = f"{said}: what it negates is unclear"
                return None
            while end < self.n and not self.punct(end) and w not in _COORD:  # "a bed that nobody has slept in"
                end += 1
                w = self.t.at(end)
        return _Scope(start, end, cue, ((concept, "object"),), lead=lead, pronoun=True)

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
        if cue == "never" and (w in _TEMPORAL | {"been"} or (ctx != "have" and (_is_ed(w) or w in _PARTICIPLES))):
            self.unsure = f"'never {self.t.words[j]}' tells a history, not what is absent from the picture"
            return None
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

    # ---- a following exception: "no furniture except a chair"
    def exception_after(self, scope: _Scope) -> _Edit | None:
        """An exception to a negated object is affirmed: 'a room without any furniture except a chair' ->
        'a room with a chair', minus furniture. The marker goes; the phrase keeps the connector the negation
        took ('with', 'that has'), or hangs on 'with' said for the cue. After 'nothing'/'nobody', or a
        negated action, attribute or relation, the exception is what is there and nothing absent can be
        named: the caption is left whole (`unsure`). None when no exception follows."""
        e = scope.end
        m = e + (self.t.at(e) == ",")
        length = self.exception(m) or int(scope.pronoun and self.t.at(m) == "but")
        if not length or m + length >= self.n or self.punct(m + length) or self.cue(m + length) is not None:
            return None
        marker = " ".join(self.t.low[m: m + length])
        if scope.pronoun:
            negated = self.t.slice(scope.start + len(scope.lead), scope.end)
            self.unsure = f"'{negated} {marker} ...' names what is there: nothing absent can be named"
            return None
        if any(kind != "object" for _, kind in scope.concepts):
            self.unsure = f"'{marker}' after a negated {scope.concepts[0][1]}: what it excepts is unclear"
            return None
        drop = list(range(e, m + length))
        lead = [self.t.at(k) for k in scope.lead]
        if "with" in lead:
            return drop, [k for k in scope.lead if self.t.at(k) == "with"], {}
        if set(lead) & _HAVE and not set(lead) & (_DO | _MODALS):  # "a room that has no furniture except ..."
            return drop, [k for k in scope.lead if self.t.at(k) in _HAVE | _RELATIVES], {}
        if "and" in lead:  # "a bed and no chairs except a stool" -> "a bed and a stool"
            return drop, [k for k in scope.lead if self.t.at(k) == "and"], {}
        if self.opening(scope.start):
            return drop, [], {}
        return drop, [], {scope.start + len(scope.lead): "with"}

    # ---- a following "but": "not a cat but a dog", "no cats but two dogs"
    def contrast(self, scope: _Scope) -> _Edit:
        """(tokens to remove, lead tokens to restore, tokens said as another word) for a contrastive 'but',
        or an 'and' before an affirmed phrase, after a scope."""
        e = scope.end
        but = [e, e + 1] if self.t.at(e) == "," and self.t.at(e + 1) == "but" else [e] if self.t.at(e) == "but" else []
        with_lead = [k for k in scope.lead if self.t.at(k) == "with"]
        if not but and self.t.at(e) == "and" and with_lead and self.affirmed_phrase(e + 1):
            return [e], with_lead, {}  # "a cup with no handle and chipped edges" -> "a cup with chipped edges"
        if not but and self.t.at(e) == "and" and self.bare_noun(e + 1) and self.affirmed_phrase(e + 1):
            with_cue = self.as_with(scope)  # "a lake without boats and tall reeds" -> "a lake with tall reeds"
            return ([e], [], with_cue) if with_cue else ([], [], {})
        if not but:
            return [], [], {}
        after = but[-1] + 1
        if after >= self.n or self.cue(after) is not None or self.t.at(after) in ("also", "there", "it", "not"):
            return [], [], {}
        if self.t.at(after) in ("with", "is", "are"):
            return but, [], {}
        restore = [k for k in scope.lead if self.t.at(k) in _COPULAS | _RELATIVES | {"with"}]
        if any(self.t.at(k) in _DO | _HAVE | _MODALS for k in scope.lead):
            restore = []
        return but, restore, {}

    def as_with(self, scope: _Scope) -> dict[int, str]:
        """A 'without' that opens a scope said as 'with', for the affirmed phrase after the scope to hang
        on; nothing when the scope opens the caption (the phrase then stands alone)."""
        i = scope.start + len(scope.lead)
        if self.t.at(i) != "without" or self.opening(scope.start):
            return {}
        return {i: self.t.words[i][:4]}

    def opening(self, k: int) -> bool:
        """Nothing affirmed before token k: it opens the caption, or earlier scopes removed all before it."""
        return all(self.removed[m] or self.punct(m) for m in range(k))


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
    """Rule-based splitter (deterministic, no model). See the package docstring for the rules."""

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
            drop, restore, say = r.exception_after(scope) or r.contrast(scope)
            for k in drop:
                r.removed[k] = True
            for k in restore:
                r.removed[k] = False
            for k, word in say.items():
                r.removed[k], r.say[k] = False, word
            scopes.append(scope)
            i = max(scope.end, i + 1)
        if r.unsure is not None:
            return NegationSplit(text, text.strip(), unsure=r.unsure)
        if not scopes:
            return NegationSplit(text, text.strip())
        kept = _trim(t, [k for k in range(r.n) if not r.removed[k]], r.removed)
        affirmative = _join(t, kept, r.say)
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


def _join(t: _Text, kept: list[int], say: dict[int, str]) -> str:
    """The kept tokens as text (`say` gives the word a kept token is said as): the caption's own spacing
    inside a kept run, one space between runs."""
    if not [k for k in kept if t.low[k] not in _STOP and t.words[k] not in _PUNCT]:
        return EMPTY_AFFIRMATIVE
    out = ""
    for n, k in enumerate(kept):
        if n and kept[n - 1] == k - 1:
            out += t.raw[t.spans[k - 1][1]: t.spans[k][0]]
        elif n:
            out += " "
        out += say.get(k, t.words[k])
    out = re.sub(r"\s*(?:\(\s*\)|\[\s*\])", "", out)  # brackets the negation emptied
    out = re.sub(r"\s+([,.;:!?)])", r"\1", out)
    out = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", out)
    out = re.sub(r",\s*([.!?])", r"\1", out)
    return out.strip(" ,;:")


_DEFAULT = RuleSplitter()


def split_negation(text: str) -> NegationSplit:
    """Split one caption with the rule-based splitter."""
    return _DEFAULT.split(text)

