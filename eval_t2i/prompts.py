"""Neg Score prompt sets: one `PromptItem` from every released format, and a validating loader.

Formats (auto-detected from the content, not the file name):

- `park107`: Park et al.'s NegationCLIP prompts, a JSON list of `{Prompt, Question1, Question2}`;
  the subject comes from "Is this a man?", the negated concept from the second question
  ("Is the man wearing a hat?" -> "wearing a hat"), both questions are kept as written.
- `multi`: the multiple-negation set, `{id, full_prompt, affirmative_prompt, negative_prompts[],
  Question1, Question2[]}`; the file gives the split, which the negative-prompt arm uses.
- `split_csv`: `Prompts,Affirmative,Negated` rows (the released split of the 107 prompts); questions
  follow docs/design.md's templates "Is there a {subject}?" / "Is there a {negated_concept}?".
- `negation_v1`: ours, `{id, prompt, subject, negated_concepts, negation_type, cue, questions}` (a
  list, or an object with a `prompts` list); `questions[0]` asks for the subject, `questions[1:]` for
  each negated concept in order.

Where a format has no type or cue, they come from `negation_encoder.splitting` (the one splitter).
A bad entry raises `InputError` with one line naming the file and the entry index (and id).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from negation_encoder.data.records import PROMPT_TYPE_OF_RECORD_TYPE
from negation_encoder.errors import InputError
from negation_encoder.splitting import split_negation

BUILTIN_SETS = ("negation_v1", "negation_v1_control")
# what a prompt negates; a training record's name for a shared kind ("absence" for "object") is read as
# this name (`negation_encoder.data.records.PROMPT_TYPE_OF_RECORD_TYPE`, the one table of both)
NEGATION_TYPES = ("object", "attribute", "action", "relation", "scene", "none")


@dataclass(frozen=True)
class PromptItem:
    """One Neg Score prompt. `affirmative` is set only where the file gives the split itself."""

    id: str
    prompt: str
    subject: str
    negated_concepts: tuple[str, ...]
    negation_type: str
    cue: str
    questions: tuple[str, ...]
    affirmative: str | None = None

    @property
    def subject_question(self) -> str:
        return self.questions[0]

    @property
    def negated_questions(self) -> tuple[str, ...]:
        return self.questions[1:]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["negated_concepts"], d["questions"] = list(self.negated_concepts), list(self.questions)
        return d


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one file and the format they were read from."""

    name: str
    format: str
    items: tuple[PromptItem, ...]

    def counts_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(i.negation_type for i in self.items).items()))

    def counts_by_cue(self) -> dict[str, int]:
        return dict(sorted(Counter(i.cue for i in self.items).items()))


def builtin_path(name: str) -> Path:
    """The packaged JSON of a built-in set (`negation_v1`, `negation_v1_control`)."""
    if name not in BUILTIN_SETS:
        raise InputError(f"unknown prompt set {name!r}: expected a file or one of {', '.join(BUILTIN_SETS)}")
    return Path(str(resources.files("eval_t2i").joinpath(f"prompts/{name}.json")))


def resolve_prompt_source(source: str | Path) -> Path:
    """A file path, or a built-in set name."""
    path = Path(source)
    if path.is_file():
        return path
    if str(source) in BUILTIN_SETS:
        return builtin_path(str(source))
    raise InputError(f"{source}: prompt file not found (nor a built-in set: {', '.join(BUILTIN_SETS)})")


def load_prompts(source: str | Path) -> PromptSet:
    """Read any supported format (auto-detected), validating every entry."""
    path = resolve_prompt_source(source)
    if path.suffix.lower() == ".csv":
        return PromptSet(path.stem, "split_csv", tuple(_load_split_csv(path)))
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    name = path.stem
    if isinstance(data, dict) and isinstance(data.get("prompts"), list):
        name, data = str(data.get("name", name)), data["prompts"]
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of prompt entries, got {type(data).__name__}")
    fmt = detect_format(path, data)
    reader = {"park107": _park_item, "multi": _multi_item, "negation_v1": _ours_item}[fmt]
    items = [reader(path, i, entry) for i, entry in enumerate(data)]
    _check_unique(path, items)
    return PromptSet(name, fmt, tuple(items))


def detect_format(path: Path, data: list) -> str:
    first = data[0]
    if not isinstance(first, dict):
        raise InputError(f"{path}: entry 0: expected an object, got {type(first).__name__}")
    if "full_prompt" in first or "negative_prompts" in first:
        return "multi"
    if "Prompt" in first:
        return "park107"
    if "prompt" in first:
        return "negation_v1"
    if "question" in first and "choices" in first:
        raise InputError(f"{path}: this is a TIFA question/answer file; use `negenc t2i tifa --questions`")
    raise InputError(f"{path}: entry 0: unknown prompt format (keys {sorted(first)}); expected Park's "
                     f"{{Prompt, Question1, Question2}}, the multi-negation {{full_prompt, negative_prompts, ...}} "
                     f"or ours {{id, prompt, subject, negated_concepts, ...}}")


def _where(path: Path, i: int, entry: object) -> str:
    key = entry.get("id") if isinstance(entry, dict) else None
    return f"{path}: entry {i}" + (f" (id {key!r})" if key is not None else "")


def _need_str(path: Path, i: int, entry: dict, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in entry else f"{type(value).__name__} {value!r}"
        raise InputError(f"{_where(path, i, entry)}: {key!r} must be a non-empty string, got {got}")
    return value.strip()


def _need_str_list(path: Path, i: int, entry: dict, key: str, allow_empty: bool = False) -> tuple[str, ...]:
    value = entry.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value) \
            or (not value and not allow_empty):
        got = "missing" if key not in entry else f"{type(value).__name__} {value!r}"
        raise InputError(f"{_where(path, i, entry)}: {key!r} must be a {'' if allow_empty else 'non-empty '}"
                         f"list of non-empty strings, got {got}")
    return tuple(v.strip() for v in value)


def _need_dict(path: Path, i: int, entry: object) -> dict:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: entry {i}: expected an object, got {type(entry).__name__}")
    return entry


_SUBJECT_Q = re.compile(r"^(?:is|are)\s+(?:this|these|there|it)\s+(?:an?\s+|the\s+|some\s+)?(.+?)\s*\??$", re.I)
_DET = re.compile(r"^(?:an?|the|any|some)\s+", re.I)


def subject_from_question(question: str) -> str | None:
    """"Is this a man?" -> "man"; None if the question is not of that form."""
    m = _SUBJECT_Q.match(question.strip())
    return m.group(1).strip() if m else None


def negated_from_question(question: str, subject: str) -> str | None:
    """The negated concept a Park-style second question asks about, or None if none of its forms match.

    "Is the man wearing a hat?" -> "wearing a hat"; "Does the cat have whiskers?" -> "whiskers";
    "Are there boats on the lake?" -> "boats"; "Does the image contain a hat?" -> "hat".
    """
    q = question.strip().rstrip("?").strip()
    s = re.escape(subject)
    forms = (
        r"^does the image (?:contain|show|have) (.+)$",
        rf"^(?:does|do) (?:the|this) {s} (?:have|contain) (.+)$",
        rf"^(?:is|are) there (.+?) (?:in|on|at|near|under|inside|around|over|by|with) (?:the|this) {s}$",
        r"^(?:is|are) there (.+)$",
        rf"^(?:is|are) (?:the|this) {s} (.+)$",
    )
    for form in forms:
        m = re.match(form, q, re.I)
        if m:
            return _DET.sub("", m.group(1).strip()) or None
    return None


def _type_and_cue(prompt: str) -> tuple[str, str]:
    split = split_negation(prompt)
    kind = split.negation_types[0] if split.negation_types else "object"
    return kind, (split.cues[0] if split.cues else "none")


def _park_item(path: Path, i: int, entry: object) -> PromptItem:
    entry = _need_dict(path, i, entry)
    prompt = _need_str(path, i, entry, "Prompt")
    q1, q2 = _need_str(path, i, entry, "Question1"), _need_str(path, i, entry, "Question2")
    subject = subject_from_question(q1)
    if subject is None:
        raise InputError(f"{_where(path, i, entry)}: 'Question1' must ask for the subject like 'Is this a man?', "
                         f"got {q1!r}")
    negated = negated_from_question(q2, subject) or ", ".join(split_negation(prompt).negated)
    if not negated:
        raise InputError(f"{_where(path, i, entry)}: cannot tell the negated concept from 'Question2' {q2!r} "
                         f"nor from the prompt {prompt!r}")
    kind, cue = _type_and_cue(prompt)
    return PromptItem(f"park_{i:03d}", prompt, subject, (negated,), kind, cue, (q1, q2))


def _multi_item(path: Path, i: int, entry: object) -> PromptItem:
    entry = _need_dict(path, i, entry)
    prompt = _need_str(path, i, entry, "full_prompt")
    affirmative = _need_str(path, i, entry, "affirmative_prompt")
    negated = _need_str_list(path, i, entry, "negative_prompts")
    q1 = _need_str(path, i, entry, "Question1")
    q2 = _need_str_list(path, i, entry, "Question2")
    if len(q2) != len(negated):
        raise InputError(f"{_where(path, i, entry)}: 'Question2' has {len(q2)} questions but 'negative_prompts' "
                         f"has {len(negated)} concepts; expected one question per concept")
    subject = subject_from_question(q1) or _DET.sub("", affirmative.rstrip(". ")).strip()
    kind, cue = _type_and_cue(prompt)
    raw_id = entry.get("id", i)
    return PromptItem(f"multi_{raw_id}", prompt, subject, negated, kind, cue, (q1, *q2), affirmative=affirmative)


def _ours_item(path: Path, i: int, entry: object) -> PromptItem:
    entry = _need_dict(path, i, entry)
    item_id = _need_str(path, i, entry, "id")
    prompt = _need_str(path, i, entry, "prompt")
    subject = _need_str(path, i, entry, "subject")
    negated = _need_str_list(path, i, entry, "negated_concepts", allow_empty=True)
    kind = _need_str(path, i, entry, "negation_type")
    kind = PROMPT_TYPE_OF_RECORD_TYPE.get(kind, kind)  # a record's name for the same kind
    if kind not in NEGATION_TYPES:
        also = ", or a record's name for one: " + ", ".join(f"{r} (= {p})" for r, p in
                                                           PROMPT_TYPE_OF_RECORD_TYPE.items() if r != p)
        raise InputError(f"{_where(path, i, entry)}: 'negation_type' must be one of {', '.join(NEGATION_TYPES)}"
                         f"{also}; got {kind!r}")
    cue = _need_str(path, i, entry, "cue")
    questions = _need_str_list(path, i, entry, "questions")
    if len(questions) != 1 + len(negated):
        raise InputError(f"{_where(path, i, entry)}: 'questions' has {len(questions)} entries; expected "
                         f"{1 + len(negated)} (the subject's, then one per negated concept)")
    return PromptItem(item_id, prompt, subject, negated, kind, cue, questions)


def _load_split_csv(path: Path) -> list[PromptItem]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    need = ("Prompts", "Affirmative", "Negated")
    items = []
    for i, row in enumerate(rows):
        missing = [k for k in need if not (row.get(k) or "").strip()]
        if missing:
            raise InputError(f"{path}: row {i + 2}: empty or missing column(s) {', '.join(missing)}; "
                             f"expected {','.join(need)}")
        prompt, aff, neg = (row[k].strip() for k in need)
        subject = _DET.sub("", aff).strip()
        kind, cue = _type_and_cue(prompt)
        questions = (f"Is there a {subject}?", _csv_negated_question(subject, neg, kind))
        items.append(PromptItem(f"split_{i:03d}", prompt, subject, (neg,), kind, cue, questions, affirmative=aff))
    if not items:
        raise InputError(f"{path}: no rows; expected a header {','.join(need)} and one row per prompt")
    return items


def _csv_negated_question(subject: str, negated: str, kind: str) -> str:
    """docs/design.md's "Is there a {negated_concept}?" for objects; an action or attribute is asked of the
    subject ("Is the dog running?", "Is the cat white?"), as Park et al.'s own questions do."""
    bare = _DET.sub("", negated).strip()
    if kind == "action":
        return f"Is the {subject} {bare}?"
    if kind == "attribute":
        words = [w for w in bare.split() if w.lower() != subject.lower()]
        return f"Is the {subject} {' '.join(words)}?"
    return f"Is there a {bare}?"


def _check_unique(path: Path, items: list[PromptItem]) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in seen:
            raise InputError(f"{path}: entry {i}: duplicate id {item.id!r} (first at entry {seen[item.id]})")
        seen[item.id] = i


def truncation_note(texts: Sequence[tuple[str, str]], tokenizer, what: str = "prompts") -> str | None:
    """One line when some of `texts` ((id, text) pairs) are longer than the tokenizer's window (77 for CLIP):
    how many, and the first, so a run says it once instead of the pipeline printing each cut-off tail."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not texts or not isinstance(limit, int) or limit > 100_000:
        return None
    ids = tokenizer([t for _, t in texts], truncation=False, verbose=False).input_ids
    over = [(key, text, len(row)) for (key, text), row in zip(texts, ids, strict=True) if len(row) > limit]
    if not over:
        return None
    key, text, n = over[0]
    short = text if len(text) <= 80 else text[:77] + "..."
    return (f"warning: {len(over)} of {len(texts)} {what} exceed the text encoder's {limit} tokens and will be "
            f"truncated (only the first {limit} tokens are read); the first: {key} ({n} tokens): {short!r}")


def _norm(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return " ".join(w for w in words if w not in ("a", "an", "the", "any", "some", "photo", "of"))


def splitter_agreement(items, splitter=None) -> dict:
    """How often the splitter reproduces the split a file gives (items with `affirmative` set).

    `negated_exact`: the same set of negated concepts (case, articles and punctuation ignored);
    `negated_recall`: the mean share of given concepts the splitter found; `affirmative_exact`: the
    same affirmative part. A low number means the negative-prompt arm would differ from the paper's.
    """
    from negation_encoder.splitting import RuleSplitter

    splitter = splitter or RuleSplitter()
    given = [it for it in items if it.affirmative is not None]
    if not given:
        return {"n": 0}
    exact = recall = aff = 0.0
    for it in given:
        s = splitter.split(it.prompt)
        want = {_norm(c) for c in it.negated_concepts}
        got = {_norm(c) for c in s.negated}
        exact += want == got
        recall += len(want & got) / len(want)
        aff += _norm(s.affirmative) == _norm(it.affirmative)
    n = len(given)
    return {"n": n, "negated_exact": exact / n, "negated_recall": recall / n, "affirmative_exact": aff / n}
