"""Generator-style prompts with negations from COCO captions and instance annotations (`negenc generate t2i`).

Why a source of its own: a frozen generator is handed short prompts ("a kitchen with a red kettle and no
cat"), not alt-text with a clause appended, and an encoder fine-tuned on P1's frames alone leaves such
prompts' token states where the base had them (the testbed's `t2i` source, `negation_testbed.world.datagen`,
is this generator on the world). Each record is one COCO caption as the prompt's subject, one sentence frame
(`T2I_FORMS`, drawn per item from a seed) and one absent object:

- the absent object is a category that co-occurs with the image's annotated categories across the
  instances file (`Cooccurrence`: P(c | s) averaged over the image's categories s; drawn among the
  `candidates` most likely, in proportion), never one annotated in the image or named by its caption
  (`categories.names_category`: "a man" names "person"). COCO's instance annotations are exhaustive for
  its 80 categories, which is what makes "no X" true without asking an MLLM;
- `caption` is the frame affirming the subject alone ("a man riding a bike down the street"),
  `negated_caption` the frame negating the absent object ("a man riding a bike down the street, no dog");
- foils (`hard_negatives`): the frame affirming the absent object, and the frame negating a category the
  caption names that the image has; `extra_positives`: the frame affirming an annotated category the
  caption does not name (true, and new to the prompt).

With an LLM (`llm`), the four texts are rewritten into natural generator prompts, one style seed per item so
that they share a frame (the `rewrite_t2i` / `rewrite_t2i_affirm` prompt files); every rewrite is
checked as P1's are (`validation.check_caption`) and rejects are counted, never written. A rejected
negated prompt drops the item's record; a rejected foil drops that foil.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..configs import Validated, at_least, collect
from ..errors import InputError
from ..splitting import has_negation_cue
from .backends import RewriteRequest, TextLLM
from .categories import caption_word, names_category, with_article
from .pipelines import CaptionItem, PipelineStats, run_items
from .records import NegationRecord
from .validation import check_caption, token_count

T2I_SOURCE = "t2i"

# (negated, foil, affirmative) frames: {subject}; {neg} a bare category name, {a_neg} with its article.
# Each negated frame is read by the splitter as {subject} minus {neg} (tests/test_t2i_data.py checks), so
# omit_states' target for the prompt is the base's reading of the subject alone.
T2I_FORMS: tuple[tuple[str, str, str], ...] = (
    ("{subject}, no {neg}", "{subject}, {a_neg}", "{subject}"),
    ("{subject} and no {neg}", "{subject} and {a_neg}", "{subject}"),
    ("{subject}, without any {neg}", "{subject}, with {a_neg}", "{subject}"),
    ("{subject} but no {neg}", "{subject} and {a_neg}", "{subject}"),
    ("{subject} with no {neg} in sight", "{subject} with {a_neg} in sight", "{subject}"),
    ("photo of {subject}, no {neg} anywhere", "photo of {subject}, {a_neg} too", "photo of {subject}"),
    ("{subject} without {a_neg}", "{subject} with {a_neg}", "{subject}"),
    ("{subject}, there is no {neg}", "{subject}, there is {a_neg}", "{subject}"),
)


@dataclass
class T2IConfig(Validated):
    """One t2i run's settings (the CLI and the API refuse the same values)."""

    candidates: int = 5  # the most co-occurring absent categories one is drawn from
    max_subject_words: int = 16  # longer captions are skipped: a generator prompt is short
    batch_size: int = 32
    seed: int = 0

    def problems(self) -> list[str]:
        return collect(*(at_least(self, k, 1) for k in ("candidates", "max_subject_words", "batch_size")))


class Cooccurrence:
    """Category co-occurrence over an instances file's images: `counts[a][b]` images holding both."""

    def __init__(self, image_categories: Mapping[str, Sequence[str]]):
        self.images = {img: frozenset(c) for img, c in image_categories.items()}
        self.vocabulary = sorted({c for cats in self.images.values() for c in cats})
        self.single: Counter = Counter(c for cats in self.images.values() for c in cats)
        self.pairs: dict[str, Counter] = {c: Counter() for c in self.vocabulary}
        for cats in self.images.values():
            for a in cats:
                self.pairs[a].update(b for b in cats if b != a)

    def absent_candidates(self, present: Sequence[str], exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
        """(category, mean P(category | p) over the present categories p), best first, for categories not
        present and not in `exclude`; only those seen with at least one present category."""
        present = [p for p in present if self.single[p]]
        if not present:
            return []
        skip = set(present) | set(exclude)
        scores = {c: sum(self.pairs[p][c] / self.single[p] for p in present) / len(present)
                  for c in self.vocabulary if c not in skip}
        return sorted(((c, s) for c, s in scores.items() if s > 0), key=lambda cs: (-cs[1], cs[0]))


def subject_of(caption: str) -> str:
    """A COCO caption as a prompt's subject: one line, no final stop, a lower-case first letter."""
    text = re.sub(r"\s+", " ", caption).strip().rstrip(".!").strip()
    first = text.split(" ", 1)[0]
    if first[:1].isupper() and (first[1:].islower() or first == "A"):  # not "TV", "I" or a name in capitals
        text = text[0].lower() + text[1:]
    return text


def _seed(*parts: object) -> int:
    return int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass
class _Plan:
    """One item's prompt: the frame's slots and the texts, template or rewritten (None: rejected)."""

    item: CaptionItem
    form: int
    neg: str
    score: float
    present_named: str | None  # the caption's word for a category the image has: the negated-present foil
    present_new: str | None  # a category the image has that the caption does not name: the extra positive
    texts: dict[str, str | None]


def _plan(item: CaptionItem, co: Cooccurrence, cfg: T2IConfig, stats: PipelineStats) -> _Plan | None:
    if has_negation_cue(item.caption):
        stats.rejects["select:caption_negates"] += 1  # the subject must affirm only
        return None
    subject = subject_of(item.caption)
    if not subject or len(subject.split()) > cfg.max_subject_words:
        stats.rejects["select:caption_too_long"] += 1
        return None
    present = sorted(item.objects)
    if not present:
        stats.rejects["select:no_annotated_objects"] += 1  # nothing to draw a plausible absent object from
        return None
    named = [c for c in co.vocabulary if names_category(item.caption, c)]
    ranked = co.absent_candidates(present, exclude=named)[: cfg.candidates]
    if not ranked:
        stats.rejects["select:no_cooccurring_absent_object"] += 1
        return None
    rng = np.random.default_rng(_seed(cfg.seed, item.id))
    weights = np.array([s for _, s in ranked])
    neg, score = ranked[int(rng.choice(len(ranked), p=weights / weights.sum()))]
    form = int(rng.integers(len(T2I_FORMS)))
    in_caption = [c for c in present if names_category(item.caption, c)]
    not_in_caption = [c for c in present if c not in in_caption]
    # the caption's own word for it: "a man riding a bike, no bike", a plain contradiction
    present_named = caption_word(item.caption, in_caption[int(rng.integers(len(in_caption)))]) if in_caption else None
    present_new = not_in_caption[int(rng.integers(len(not_in_caption)))] if not_in_caption else None
    neg_form, foil_form, aff_form = T2I_FORMS[form]

    def fill(frame: str, obj: str) -> str:
        return frame.format(subject=subject, neg=obj, a_neg=with_article(obj))

    texts = {"caption": aff_form.format(subject=subject), "negated": fill(neg_form, neg),
             "affirmed": fill(foil_form, neg),
             "present_negated": fill(neg_form, present_named) if present_named else None,
             "present_affirmed": fill(foil_form, present_new) if present_new else None}
    stats.stages["planned"] += 1
    return _Plan(item, form, neg, score, present_named, present_new, texts)


# which texts an LLM rewrites: (key, concept attribute of the plan, request kind, negated?)
_REWRITES = (("negated", "neg", "t2i", True), ("affirmed", "neg", "t2i_affirm", False),
             ("present_negated", "present_named", "t2i", True), ("present_affirmed", "present_new", "t2i_affirm", False))


def _rewrite(plans: list[_Plan], llm: TextLLM, tokenizer, stats: PipelineStats) -> None:
    jobs = [(p, key, getattr(p, attr), kind, negated) for p in plans for key, attr, kind, negated in _REWRITES
            if p.texts[key] is not None]
    outs = llm.rewrite([RewriteRequest(p.texts["caption"], concept, kind, style=_seed(p.item.id))
                        for p, _, concept, kind, _ in jobs]) if jobs else []
    for (p, key, concept, _, negated), text in zip(jobs, outs, strict=True):
        reason = check_caption(text, p.texts["caption"], concept, tokenizer, negated=negated)
        if reason:
            stats.rejects[f"rewrite:{reason}"] += 1
            p.texts[key] = None
        else:
            stats.stages["rewrite_ok"] += 1
            p.texts[key] = text.strip()


def t2i_records(batch: list[CaptionItem], co: Cooccurrence, cfg: T2IConfig, stats: PipelineStats,
                llm: TextLLM | None = None, tokenizer=None) -> list[NegationRecord]:
    """The records of one batch of caption items (each with its image's annotated categories in `objects`)."""
    plans = [p for p in (_plan(it, co, cfg, stats) for it in batch) if p is not None]
    if llm is not None:
        _rewrite(plans, llm, tokenizer, stats)
    records = []
    for p in plans:
        t = p.texts
        if t["negated"] is None:
            continue
        texts = [t["caption"], t["negated"], *(x for x in (t["affirmed"], t["present_negated"], t["present_affirmed"])
                                               if x)]
        if max(token_count(x, tokenizer) for x in texts) > 77:  # without a tokenizer, a lower bound
            stats.rejects["select:too_long"] += 1
            continue
        prov = {"pipeline": T2I_SOURCE, "forms": "data.t2i.T2I_FORMS", "form": p.form,
                "absent_from": "instances co-occurrence", "cooccurrence": round(p.score, 4),
                "present_foil": p.present_named}
        if llm is not None:
            prov.update(llm=llm.name, llm_prompt_version=llm.prompt_version)
        records.append(NegationRecord(
            id=f"t2i:{p.item.id}:{p.neg}", image=p.item.image, caption=t["caption"], negated_caption=t["negated"],
            negation_type="absence", negated_concept=p.neg, source=T2I_SOURCE,
            hard_negatives=[x for x in (t["affirmed"], t["present_negated"]) if x], provenance=prov,
            extra_positives=[t["present_affirmed"]] if t["present_affirmed"] else None))
    return records


def with_objects(items: Sequence[CaptionItem], image_categories: Mapping[str, Sequence[str]], captions: str,
                 instances: str) -> list[CaptionItem]:
    """`items` with each image's annotated categories as `objects`; items whose image the instances file does
    not list are left out (the caller counts them). None listed at all is an error: the two files are from
    different splits (captions_train2014 with instances_val2014)."""
    kept = [CaptionItem(it.id, it.image, it.caption, sorted(image_categories[it.image]))
            for it in items if it.image in image_categories]
    if items and not kept:
        raise InputError(f"{instances}: lists none of the images of the {len(items)} captions of {captions} (expected the "
                         "instances file of the captions' split, e.g. instances_train2014.json with "
                         "captions_train2014.json)")
    return kept


def run_t2i(items: Sequence[CaptionItem], out, cooccurrence: Cooccurrence, cfg: T2IConfig | None = None,
            llm: TextLLM | None = None, tokenizer=None, progress: bool = True, counts: Mapping[str, int] | None = None
            ) -> PipelineStats:
    """Append t2i records for `items` to `out` (resumable, as every pipeline: `pipelines.run_items`); write
    `<out>.stats.json`, with `counts` (items the caller left out, by reason) among its rejects. Each item's
    `objects` must list its image's annotated categories."""
    cfg = cfg or T2IConfig()
    stats = PipelineStats(T2I_SOURCE)
    stats.rejects.update(counts or {})
    return run_items(items, out, cfg.batch_size,
                     lambda batch: t2i_records(batch, cooccurrence, cfg, stats, llm, tokenizer), stats,
                     progress=progress)
