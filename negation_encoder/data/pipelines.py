"""NegationCLIP's data pipelines (P1, Rand-P1, P2) and presence negation, over any backends.

P1: the LLM proposes plausible objects from the caption alone -> the MLLM verifies each is absent
from the image -> the LLM rewrites the caption with negation. Rand-P1 draws the objects at random
from a category list instead. P2: a VQA question answered "no" -> the LLM rewrites the caption
with that negation. Presence: the LLM negates an object the caption mentions, giving a caption that
is false for the image (a hard negative; Omni-NegCLIP's presence-based data).

Absence records can carry counterfactual `distractor_images` (docs/design.md): images that contain the
negated concept and as much of the rest of the caption as possible, the negatives of the negated
caption in the text-to-image direction. A `DistractorSource` supplies them: the testbed renders the
scene plus the concept (`negation_testbed.world.datagen.WorldDistractors`); on COCO,
`data.distractors.AnnotationDistractorMiner` mines the closest real images that contain the concept
from the instance annotations. P2's attribute and relation records get them from a source that is also
an `AnswerFlipSource`: the same image with the question's answer turned to "yes" ("the chair is not
blue" against the scene with the chair blue), which the testbed renders exactly. Generating or
inpainting counterfactual images (TripletCLIP-style) is out of scope here.

Every generated caption is validated (`validation.check_caption`); rejects are counted by reason and
never written. Output is append-only NegationRecord JSONL: a killed run re-run with the same
arguments resumes after the last finished item, with no duplicates and no gaps.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from ..configs import Validated, at_least, collect
from ..runio import atomic_write_json, repair_torn_tail
from .backends import RewriteRequest, TextLLM, VisionLLM
from .records import NegationRecord, RecordWriter
from .validation import check_caption, mentions

PIPELINES = ("p1", "rand_p1", "p2", "presence")


@dataclass
class CaptionItem:
    """An image with one caption; `objects` lists objects known to be present (optional)."""

    id: str
    image: str
    caption: str
    objects: list[str] = field(default_factory=list)


@dataclass
class QAItem:
    """A VQA triplet answered "no", with the image's caption. `detail` holds structured facts if known."""

    id: str
    image: str
    caption: str
    question: str
    answer: str
    negation_type: str = "attribute"
    concept: str = ""
    detail: dict = field(default_factory=dict)


@runtime_checkable
class DistractorSource(Protocol):
    """Images that contain `concept` and share as much of `item`'s caption as possible."""

    name: str

    def distractors(self, item: CaptionItem, concept: str, k: int) -> list[str]:
        """Up to k image keys (resolvable like `item.image`), closest first; never `item.image`."""
        ...


@runtime_checkable
class AnswerFlipSource(Protocol):
    """Images in which a "no"-answered question (a P2 item) would be answered "yes": the same scene with
    the asked attribute or relation made true. Why: P2's negated caption ("the chair is not blue") is
    best told apart, text to image, from the image it would otherwise describe (the chair blue); a
    negation-blind encoder prefers that image, MCQ over caption foils alone never asks it to choose."""

    name: str

    def answer_flipped(self, item: QAItem, k: int) -> list[str]:
        """Up to k image keys (resolvable like `item.image`); never `item.image`; [] when none exists."""
        ...


@dataclass
class PipelineStats:
    pipeline: str
    items_total: int = 0
    items_skipped_done: int = 0
    items_processed: int = 0
    stages: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    records_written: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "items_total": self.items_total,
            "items_skipped_done": self.items_skipped_done,
            "items_processed": self.items_processed,
            "stages": dict(self.stages),
            "rejects": dict(self.rejects),
            "records_written": self.records_written,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_written / self.seconds, 3) if self.seconds else 0.0,
        }


@dataclass
class PipelineConfig(Validated):
    """One pipeline run's settings; every value checked here (the CLI and the API refuse the same things)."""

    pipeline: str = "p1"
    k: int = 3  # objects proposed per caption
    per_item: int = 1  # records kept per caption
    confidence: float = 0.8  # keep an object only if P(absent) >= confidence
    batch_size: int = 32
    seed: int = 0
    categories: Sequence[str] = ()  # Rand-P1's category list
    # distractor images per absence record, when a source is given (and per P2 attribute / relation
    # record, when the source is also an AnswerFlipSource)
    distractors_per_record: int = 2
    # P1: add "a N but no B" foils beside their true twins "a B but no N" (needs known present objects).
    # Opt-in: in the current MCQ term they lift NegBench's negative template and negated retrieval but
    # cost zero-shot and pairwise (docs/diagnosis.md); on by default once the trainer balances them.
    compositional: bool = False

    def problems(self) -> list[str]:
        p = collect(*(at_least(self, k, 1) for k in ("k", "per_item", "batch_size")),
                    at_least(self, "distractors_per_record", 0))
        if self.pipeline not in PIPELINES:
            p.append(f"pipeline must be one of {', '.join(PIPELINES)}, got {self.pipeline!r}")
        if not isinstance(self.confidence, (int, float)) or not 0.0 <= self.confidence <= 1.0:
            p.append(f"confidence must be a probability in [0, 1], got {self.confidence!r}")
        return p


def _style(*parts: str) -> int:
    return int(hashlib.sha1("|".join(parts).encode()).hexdigest()[:8], 16)


class _Done:
    """Append-only log of finished item ids (`<out>.done`, one line each), so resume skips whole items.
    A torn last line is cut off on open (`runio.repair_torn_tail`); nothing is created until an item ends."""

    def __init__(self, out: Path):
        self.path = out.with_name(out.name + ".done")
        repair_torn_tail(self.path)
        self.ids: set[str] = set(self.path.read_text(encoding="utf-8").splitlines()) if self.path.exists() else set()

    def add_batch(self, item_ids: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(i + "\n" for i in item_ids))
            fh.flush()
        self.ids.update(item_ids)


def _provenance(cfg: PipelineConfig, llm: TextLLM | None, mllm: VisionLLM | None, **extra) -> dict:
    prov = {"pipeline": cfg.pipeline}
    if llm is not None:
        prov.update(llm=llm.name, llm_prompt_version=llm.prompt_version)
    if mllm is not None:
        prov.update(mllm=mllm.name, mllm_prompt_version=mllm.prompt_version, confidence=cfg.confidence)
    prov.update(extra)
    return prov


def run_pipeline(
    items: Iterable[CaptionItem | QAItem],
    out: str | os.PathLike,
    cfg: PipelineConfig,
    llm: TextLLM,
    mllm: VisionLLM | None = None,
    tokenizer=None,
    progress: bool = True,
    distractors: DistractorSource | None = None,
) -> PipelineStats:
    """Run one pipeline over `items`, appending valid records to `out`; write `<out>.stats.json`.

    With `distractors`, every absence record gets `distractor_images` from that source, and so does every
    P2 record when the source is also an `AnswerFlipSource`."""
    if cfg.pipeline in ("p1", "rand_p1") and mllm is None:
        raise ValueError(f"pipeline {cfg.pipeline} needs an MLLM to verify absence")
    if cfg.pipeline == "rand_p1" and not cfg.categories:
        raise ValueError("pipeline rand_p1 needs a category list (PipelineConfig.categories)")
    stats = PipelineStats(cfg.pipeline)
    step = {"p1": _p1_batch, "rand_p1": _p1_batch, "p2": _p2_batch, "presence": _presence_batch}[cfg.pipeline]

    def records(batch: list) -> list[NegationRecord]:
        found = step(batch, cfg, llm, mllm, tokenizer, stats)
        if distractors is not None:
            _attach_distractors(found, batch, distractors, cfg.distractors_per_record, stats)
        return found

    return run_items(items, out, cfg.batch_size, records, stats, progress=progress)


def run_items(items: Iterable, out: str | os.PathLike, batch_size: int, records: Callable[[list], Iterable],
              stats: PipelineStats, progress: bool = True, writer: Callable[[Path], RecordWriter] = RecordWriter
              ) -> PipelineStats:
    """The loop every generator shares: items (anything with a unique `id`) in batches, `records(batch)`
    appended to `out` by `writer` (a `RecordWriter`, or one of its kind for another record type), each
    batch's item ids logged in `<out>.done` only after its records are on disk, so the same call after a
    kill resumes after the last finished batch with no duplicates and no gaps; `<out>.stats.json` at the end.
    `records` may write files its records point to (masks, crops) before returning them."""
    out = Path(out)
    items = list(items)
    stats.items_total = len(items)
    start = time.perf_counter()
    done = _Done(out)
    todo = [it for it in items if it.id not in done.ids]
    stats.items_skipped_done = len(items) - len(todo)
    with writer(out) as sink:
        bar = tqdm(total=len(todo), desc=f"generate {stats.pipeline}", disable=not progress, unit="item")
        for i in range(0, len(todo), batch_size):
            batch = todo[i: i + batch_size]
            for rec in records(batch):
                if sink.write(rec):
                    stats.records_written += 1
            done.add_batch([it.id for it in batch])  # only after the batch's records are on disk
            stats.items_processed += len(batch)
            bar.update(len(batch))
        bar.close()
    stats.seconds = time.perf_counter() - start
    stats_path = out.with_name(out.name + ".stats.json")
    atomic_write_json(stats_path, stats.to_dict(), sort_keys=False)
    return stats


def _attach_distractors(records: list[NegationRecord], batch: list, source: DistractorSource, k: int,
                        stats: PipelineStats) -> None:
    """Give each absence record up to k distractor images (never its own image), and each record made from
    a "no"-answered question up to k images where the answer is "yes" if the source can flip answers."""
    by_caption = {(it.image, it.caption): it for it in batch}
    flips = isinstance(source, AnswerFlipSource)
    for rec in records:
        it = by_caption[(rec.image, rec.caption)]
        if rec.negation_type == "absence":
            item = it if isinstance(it, CaptionItem) else CaptionItem(it.id, it.image, it.caption)
            found = source.distractors(item, rec.negated_concept, k)
        elif flips and isinstance(it, QAItem) and rec.negation_type != "presence":
            found = source.answer_flipped(it, k)
        else:
            continue
        keys = list(dict.fromkeys(key for key in found if key != rec.image))
        if not keys:
            stats.rejects["distractors:none_found"] += 1
            continue
        stats.stages["distractor_images"] += len(keys[:k])
        rec.distractor_images = keys[:k]
        rec.provenance["distractor_source"] = source.name


def _rewrite_checked(llm, requests, originals, concepts, negated_flags, tokenizer, stats, stage):
    outs = llm.rewrite(requests) if requests else []
    result = []
    for text, orig, concept, negated in zip(outs, originals, concepts, negated_flags, strict=True):
        reason = check_caption(text, orig, concept, tokenizer, negated=negated)
        if reason:
            stats.rejects[f"{stage}:{reason}"] += 1
            result.append(None)
        else:
            stats.stages[f"{stage}_ok"] += 1
            result.append(text.strip())
    return result


@dataclass
class _Rewrite:
    """One caption asked of the LLM, whether it must negate its concept, and the validated text (None: rejected)."""

    request: RewriteRequest
    negated: bool
    text: str | None = None


def _text(rewrite: _Rewrite | None) -> str | None:
    return rewrite.text if rewrite else None


@dataclass
class _P1Job:
    """The rewrites of one (item, absent object), all in one sentence frame: "no obj" (the negated caption),
    "obj" (a foil); with a present object known, "no present" (a foil) and "present" (true); with
    compositional, "present but no obj" (false) and its twin "obj but no present" (true)."""

    item: CaptionItem
    obj: str
    p_yes: float
    present: str | None
    negated: _Rewrite
    affirmed: _Rewrite
    present_negated: _Rewrite | None = None
    present_affirmed: _Rewrite | None = None
    compositional_false: _Rewrite | None = None
    compositional_true: _Rewrite | None = None

    @classmethod
    def plan(cls, it: CaptionItem, obj: str, p_yes: float, present: str | None, style: int,
             compositional: bool) -> _P1Job:
        def ask(concept: str, kind: str, negated: bool, detail: dict | None = None) -> _Rewrite:
            return _Rewrite(RewriteRequest(it.caption, concept, kind, style=style, detail=detail or {}), negated)

        job = cls(it, obj, p_yes, present, ask(obj, "absence", True), ask(obj, "affirm", False))
        if present:
            job.present_negated = ask(present, "absence", True)
            job.present_affirmed = ask(present, "affirm", False)
            if compositional:
                job.compositional_false = ask(present, "compositional", True, {"affirm": obj, "negate": present})
                job.compositional_true = ask(obj, "compositional", True, {"affirm": present, "negate": obj})
        return job

    def rewrites(self) -> list[_Rewrite]:
        """The rewrites in the order they are sent."""
        return [r for r in (self.negated, self.affirmed, self.present_negated, self.present_affirmed,
                            self.compositional_false, self.compositional_true) if r is not None]


def _p1_batch(batch, cfg, llm, mllm, tokenizer, stats) -> list[NegationRecord]:
    captions = [it.caption for it in batch]
    if cfg.pipeline == "p1":
        proposals = llm.propose_objects(captions, cfg.k)
    else:
        proposals = []
        for it in batch:
            rng = np.random.default_rng(_style(str(cfg.seed), it.id))
            proposals.append([str(c) for c in rng.choice(list(cfg.categories), size=min(cfg.k, len(cfg.categories)), replace=False)])
    pairs: list[tuple[int, str]] = []
    for idx, (it, props) in enumerate(zip(batch, proposals, strict=True)):
        if props is None:
            stats.rejects["propose:malformed"] += 1
            continue
        stats.stages["proposed"] += len(props)
        for obj in props:
            if mentions(it.caption, obj):
                stats.rejects["propose:mentioned_in_caption"] += 1
            else:
                pairs.append((idx, obj))
    probs = mllm.presence_probability([batch[i].image for i, _ in pairs], [o for _, o in pairs]) if pairs else []
    kept: dict[int, list[tuple[str, float]]] = {}
    for (idx, obj), p_yes in zip(pairs, probs, strict=True):
        if 1.0 - p_yes >= cfg.confidence:
            if len(kept.setdefault(idx, [])) < cfg.per_item:
                kept[idx].append((obj, p_yes))
                stats.stages["verified_absent"] += 1
        else:
            stats.rejects["verify:present_or_unsure"] += 1
    # one negated caption and its minimal foils per (item, object), sharing a sentence frame
    jobs = []
    for idx, found in kept.items():
        it = batch[idx]
        for obj, p_yes in found:
            style = _style(it.id, obj)
            present = it.objects[style % len(it.objects)] if it.objects else None
            jobs.append(_P1Job.plan(it, obj, p_yes, present, style, cfg.compositional))
    rewrites = [r for job in jobs for r in job.rewrites()]
    texts = _rewrite_checked(llm, [r.request for r in rewrites], [r.request.caption for r in rewrites],
                             [r.request.concept for r in rewrites], [r.negated for r in rewrites], tokenizer, stats,
                             "rewrite")
    for r, text in zip(rewrites, texts, strict=True):
        r.text = text
        if r.request.kind == "compositional" and text and not mentions(text, r.request.detail["affirm"]):
            # a compositional caption must name the object it affirms too
            stats.rejects["rewrite:compositional_no_affirmed"] += 1
            r.text = None
    records = []
    for job in jobs:
        if job.negated.text is None:
            continue
        foils = [t for t in (job.affirmed.text, _text(job.present_negated)) if t]
        positives = [t for t in (_text(job.present_affirmed),) if t]
        compositional = {}
        if _text(job.compositional_false) and _text(job.compositional_true):
            foils.append(job.compositional_false.text)  # never a foil without its twin
            positives.append(job.compositional_true.text)
            compositional = {"compositional": [job.obj, job.present],
                             "compositional_prompt": f"rewrite_compositional.{llm.prompt_version}"}
        elif job.compositional_false:
            stats.rejects["compositional:pair_incomplete"] += 1
        records.append(NegationRecord(
            id=f"{cfg.pipeline}:{job.item.id}:{job.obj}", image=job.item.image, caption=job.item.caption,
            negated_caption=job.negated.text, negation_type="absence", negated_concept=job.obj, source=cfg.pipeline,
            hard_negatives=foils,
            provenance=_provenance(cfg, llm, mllm, p_yes=round(float(job.p_yes), 4), present_foil=job.present,
                                   **compositional),
            extra_positives=positives or None,
        ))
    return records


def _p2_batch(batch, cfg, llm, mllm, tokenizer, stats) -> list[NegationRecord]:
    requests, originals, concepts, negated = [], [], [], []
    usable = []
    for it in batch:
        if it.answer.strip().lower() != "no":
            stats.rejects["select:answer_not_no"] += 1
            continue
        concept = it.concept or _concept_from_question(it.question)
        if not concept:
            stats.rejects["select:no_concept_in_question"] += 1
            continue
        style = _style(it.id)
        usable.append((it, concept))
        kind = it.negation_type if it.negation_type in ("attribute", "relation", "action") else "absence"
        requests += [RewriteRequest(it.caption, concept, kind, it.question, it.answer, it.detail, style),
                     RewriteRequest(it.caption, concept, f"{kind}_affirm" if kind != "absence" else "affirm",
                                    it.question, it.answer, it.detail, style)]
        originals += [it.caption, it.caption]
        concepts += [concept, concept]
        negated += [True, False]
    texts = _rewrite_checked(llm, requests, originals, concepts, negated, tokenizer, stats, "rewrite")
    records = []
    for j, (it, concept) in enumerate(usable):
        neg, affirm = texts[2 * j], texts[2 * j + 1]
        if neg is None:
            continue
        records.append(NegationRecord(
            id=f"p2:{it.id}", image=it.image, caption=it.caption, negated_caption=neg,
            negation_type=it.negation_type, negated_concept=concept, source="p2",
            hard_negatives=[affirm] if affirm else [],
            provenance=_provenance(cfg, llm, None, question=it.question, answer=it.answer),
        ))
    return records


def _presence_batch(batch, cfg, llm, mllm, tokenizer, stats) -> list[NegationRecord]:
    requests, jobs = [], []
    for it in batch:
        # known present objects, else the category names the caption itself mentions (COCO captions)
        known = it.objects or list(cfg.categories)
        mentioned = [o for o in known if mentions(it.caption, o)]
        if not mentioned:
            stats.rejects["select:no_known_present_object"] += 1
            continue
        obj = mentioned[_style(it.id) % len(mentioned)]
        requests.append(RewriteRequest(it.caption, obj, "presence", style=_style(it.id, obj)))
        jobs.append((it, obj))
    texts = _rewrite_checked(llm, requests, [it.caption for it, _ in jobs], [o for _, o in jobs],
                             [True] * len(jobs), tokenizer, stats, "rewrite")
    return [
        NegationRecord(
            id=f"presence:{it.id}:{obj}", image=it.image, caption=it.caption, negated_caption=text,
            negation_type="presence", negated_concept=obj, source="presence", hard_negatives=[],
            provenance=_provenance(cfg, llm, None, note="negated_caption is false for the image"),
        )
        for (it, obj), text in zip(jobs, texts, strict=True) if text
    ]


def _concept_from_question(question: str) -> str:
    """The last content word of a yes/no question ("Is the man wearing a hat?" -> "hat")."""
    words = [w.strip("?.,!").lower() for w in question.split()]
    stop = {"is", "are", "the", "a", "an", "there", "this", "that", "it", "of", "in", "on", "any", "does", "do"}
    content = [w for w in words if w and w not in stop]
    return content[-1] if content else ""
