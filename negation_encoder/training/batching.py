"""From NegationRecords to padded token batches that carry every loss term's targets.

Each record becomes one example: the caption that is true for its image (the negated caption, or
for presence records the original), the original caption, and its foils. Every distinct text is
tokenized once up front; a batch is padded to its longest caption, not to 77 tokens, which is exact
for the pooled output because CLIP's causal mask keeps later tokens out of the eos state.

What the terms compare against is fixed before the first step (`ExampleTargets`: the cached image
embeddings and the frozen base's per-example readings) and `collate` copies each example's rows into
its batch, so the objective reads a batch and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.records import NegationRecord
from ..splitting import NegationSplit, split_negation
from .losses import TERMS


@dataclass(frozen=True)
class Example:
    image: int  # index into the image-embedding table
    positive: str  # true for the image: the InfoNCE and MCQ target
    original: str  # the affirmative caption
    foils: tuple[str, ...]  # false for the image (MCQ choices, hard negatives)
    presence_negated: str | None  # Omni presence: negates an object that IS there
    absence_negated: str | None  # Omni absence: negates an object that is NOT there
    extra_positives: tuple[str, ...] = ()  # more true captions scored against the same foils (MCQ only)
    bare: bool = False  # the true caption affirms nothing ("a photo with no fork"): see `NegationSplit.is_bare`
    distractors: tuple[int, ...] = ()  # image indices: the scene plus the negated concept (text-to-image)
    eligible: frozenset[str] = frozenset(TERMS)  # the loss terms this example feeds (`eligibility`)
    affirmative: str | None = None  # the splitter's affirmative part of `positive` (omit_states' target text)
    negated: str | None = None  # its negated concepts joined by ", " (unet_loss's negative prompt)


def distractor_keys(rec: NegationRecord) -> tuple[str, ...]:
    """The record's `distractor_images` (DESIGN: images that contain the negated concept and share as
    much of the caption as possible), never its own image."""
    keys = rec.distractor_images or ()
    return tuple(str(k) for k in keys if isinstance(k, str) and k != rec.image)


def of_types(rec: NegationRecord, types: Sequence[str]) -> bool:
    """Whether a term narrowed to `types` (`omit_types`, `distractor_types`; empty: every type) takes the record."""
    return not types or rec.negation_type in types


def of_sources(rec: NegationRecord, sources: Sequence[str]) -> bool:
    """Whether a term narrowed to `sources` (`distractor_sources`; empty: every source) takes the record."""
    return not sources or rec.source in sources


def true_caption(rec: NegationRecord) -> str:
    """The caption that is true for the record's image: the original for presence records (their negated
    caption negates an object the image shows), the negated caption for every other type."""
    return rec.caption if rec.negation_type == "presence" else rec.negated_caption


def eligibility(rec: NegationRecord, split: NegationSplit | None = None, infonce_on_bare: bool = False,
                omit_types: Sequence[str] = (), distractor_types: Sequence[str] = (),
                distractor_sources: Sequence[str] = ()) -> dict[str, bool]:
    """Which loss terms (`TERMS`) the record feeds, from its fields and `negation_type` alone (and, for
    InfoNCE and split distillation, from the splitter's reading of its true caption; pass `split` =
    `split_negation(true_caption(rec))` when already computed). The one rule: `example_from_record`
    builds examples from it, `collate` masks terms by it, the trainer counts it before compute.

    infonce: the true caption, unless it is a bare negation (`NegationSplit.is_bare`) and not `infonce_on_bare`;
    mcq: records with foils (hard_negatives, or presence records, whose negated caption is a foil);
    omni_presence / omni_absence: presence / absence records; distractor: non-presence records that
    list distractor_images (only those whose negation_type is in `distractor_types` and whose source is in
    `distractor_sources`, when given);
    split_distill, omit_states and unet_loss: true captions the splitter finds a negation
    in (omit_states: only records whose negation_type is in `omit_types`, when given); preserve /
    preserve_embeds: every record (their original caption); preserve_states: every record (the affirmative
    part of its true caption, at the pipeline's padding); seg_loss: none (it reads
    ReferringRecords, not NegationRecords)."""
    split = split if split is not None else split_negation(true_caption(rec))
    presence = rec.negation_type == "presence"
    ok = {
        "infonce": infonce_on_bare or not split.is_bare,
        "mcq": presence or bool(rec.hard_negatives),
        "omni_presence": presence,
        "omni_absence": rec.negation_type == "absence",
        "distractor": (not presence and bool(distractor_keys(rec)) and of_types(rec, distractor_types)
                       and of_sources(rec, distractor_sources)),
        "split_distill": split.has_negation,
        "preserve": True,
        "preserve_embeds": True,
        "preserve_states": True,
        "omit_states": split.has_negation and of_types(rec, omit_types),
        "seg_loss": False,
        "unet_loss": split.has_negation,
    }
    return {t: ok[t] for t in TERMS}


def example_from_record(rec: NegationRecord, image_index: int, key_index: dict[str, int] | None = None,
                        infonce_on_bare: bool = False, split: NegationSplit | None = None,
                        omit_types: Sequence[str] = (), distractor_types: Sequence[str] = (),
                        distractor_sources: Sequence[str] = ()) -> Example:
    """The record as the terms it feeds (`eligibility`) see it. `extra_positives` (an optional record
    key) lists further captions true for the image, e.g. the affirmative twin of a presence foil ("a
    photo with a cup" beside "a photo with no cup"): without such positives the MCQ term only ever
    pushes affirmative phrasings away from images. `distractor_images` become text-to-image negatives
    of the negated caption when `key_index` (the image table's keys) is given."""
    split = split if split is not None else split_negation(true_caption(rec))
    ok = eligibility(rec, split, infonce_on_bare, omit_types, distractor_types, distractor_sources)
    extra = tuple(str(t) for t in rec.extra_positives or () if isinstance(t, str))
    presence = rec.negation_type == "presence"
    foils = (rec.negated_caption, *rec.hard_negatives) if presence else tuple(rec.hard_negatives)
    distractors = (tuple(key_index[k] for k in distractor_keys(rec))
                   if ok["distractor"] and key_index is not None else ())
    return Example(image_index, true_caption(rec), rec.caption, foils,
                   rec.negated_caption if ok["omni_presence"] else None,
                   rec.negated_caption if ok["omni_absence"] else None,
                   extra, split.is_bare, distractors, frozenset(t for t, v in ok.items() if v),
                   split.affirmative if split.has_negation else None,
                   ", ".join(split.negated) if split.has_negation else None)


def examples_from_records(records: Sequence[NegationRecord], key_index: dict[str, int], distractors: bool = False,
                          infonce_on_bare: bool = False, omit_types: Sequence[str] = (),
                          distractor_types: Sequence[str] = (), distractor_sources: Sequence[str] = ()
                          ) -> list[Example]:
    """`example_from_record` for every record, splitting each distinct true caption once (the rule
    splitter costs about a millisecond a caption, and datasets repeat captions)."""
    splits: dict[str, NegationSplit] = {}
    out = []
    for rec in records:
        text = true_caption(rec)
        if text not in splits:
            splits[text] = split_negation(text)
        out.append(example_from_record(rec, key_index[rec.image], key_index if distractors else None,
                                       infonce_on_bare, splits[text], omit_types, distractor_types,
                                       distractor_sources))
    return out


def eligible_counts(examples: Sequence[Example], terms: Sequence[str] = TERMS) -> dict[str, int]:
    """How many examples feed each of `terms`."""
    return {t: sum(t in ex.eligible for ex in examples) for t in terms}


class TokenTable:
    """Token ids of every distinct text, computed once; `pad()` builds a batch padded to the longest."""

    def __init__(self, tokenizer, texts: Sequence[str]):
        self.tokenizer = tokenizer
        unique = list(dict.fromkeys(texts))
        enc = tokenizer(unique, truncation=True, max_length=tokenizer.model_max_length)
        self.ids = dict(zip(unique, enc.input_ids, strict=True))
        self.pad_id = tokenizer.pad_token_id

    def pad(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.ids[t] for t in texts]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return input_ids, mask


def all_texts(examples: Sequence[Example]) -> list[str]:
    out = []
    for ex in examples:
        out += [ex.positive, ex.original, *ex.foils, *ex.extra_positives]
    return out


@dataclass(frozen=True)
class ExampleTargets:
    """Targets fixed before any step, indexed by `collate`: the image-embedding table (one row per image
    key) and, per example (training-set order), the frozen base's readings that some terms need."""

    images: torch.Tensor  # (K, D) cached image embeddings
    distractors: bool = False  # batches carry the embeddings of each example's distractor images
    base_embed: torch.Tensor | None = None  # (N, D) base embedding of each original caption (preserve_embeds)
    split_target: torch.Tensor | None = None  # (N, D) base split reading of each true caption (split_distill)
    # omit_states: each true caption and its affirmative part, tokenized as the downstream pipeline pads them
    states_ids: torch.Tensor | None = None  # (N, L)
    states_mask: torch.Tensor | None = None  # (N, L)
    states_target_ids: torch.Tensor | None = None  # (N, L)
    states_target_mask: torch.Tensor | None = None  # (N, L)
    states_rows: torch.Tensor | None = None  # (N,) bool: the example feeds omit_states
    states_neg_ids: torch.Tensor | None = None  # (N, L) the negated concepts as a negative prompt (unet_loss)
    states_neg_mask: torch.Tensor | None = None
    states_positions: torch.Tensor | None = None  # (N, L) bool: positions omit_states counts (None: all)


@dataclass
class Batch:
    image_index: torch.Tensor  # (B,)
    input_ids: torch.Tensor  # (T, L) every distinct text of the batch
    attention_mask: torch.Tensor
    positive: torch.Tensor  # (B,) row of each example's true caption in input_ids
    original: torch.Tensor  # (B,)
    foils: torch.Tensor  # (B, F) rows, -1 where absent
    presence_negated: torch.Tensor  # (B,) row or -1
    absence_negated: torch.Tensor  # (B,) row or -1
    mcq_example: torch.Tensor  # (R,) the example (row of the batch) each MCQ question belongs to
    mcq_choices: torch.Tensor  # (R, 1 + F) text rows: the true caption first, then foils; -1 padding
    in_pool: torch.Tensor  # (B,) bool: the true caption joins the InfoNCE pool (eligible for infonce)
    distractors: torch.Tensor  # (B, K) image indices of each example's counterfactual images, -1 padding
    example_index: torch.Tensor  # (B,) index of each example in the training set (per-example targets)
    # targets, copied from `ExampleTargets` (None when collated without them or when no term needs them)
    image_emb: torch.Tensor | None = None  # (B, D) each example's cached image embedding
    distractor_emb: torch.Tensor | None = None  # (B, K, D) of `distractors`; padding rows masked by distractors >= 0
    base_embed: torch.Tensor | None = None  # (B, D)
    split_target: torch.Tensor | None = None  # (B, D)
    split_mask: torch.Tensor | None = None  # (B,) bool: the example feeds split_distill (with split_target)
    states_ids: torch.Tensor | None = None  # (B, L) omit_states: the true captions at the pipeline's padding
    states_mask: torch.Tensor | None = None
    states_target_ids: torch.Tensor | None = None  # (B, L) their affirmative parts, padded the same way
    states_target_mask: torch.Tensor | None = None
    states_rows: torch.Tensor | None = None  # (B,) bool
    states_neg_ids: torch.Tensor | None = None  # (B, L)
    states_neg_mask: torch.Tensor | None = None
    states_positions: torch.Tensor | None = None  # (B, L) bool, or None: every position

    def to(self, device) -> Batch:
        return dataclasses.replace(self, **{k: v.to(device) for k, v in vars(self).items() if v is not None})


def collate(examples: Sequence[Example], table: TokenTable, max_foils: int, max_distractors: int = 4,
            example_index: Sequence[int] | None = None, targets: ExampleTargets | None = None) -> Batch:
    """One batch of `examples` (rows `example_index` of the training set, needed with `targets`). Each
    term sees the examples its `eligible` set names: the InfoNCE pool (`in_pool`), MCQ questions,
    the Omni rows, distractors and the split-distillation mask all follow it."""
    texts: list[str] = []
    where: dict[str, int] = {}

    def row(t: str | None) -> int:
        if t is None:
            return -1
        if t not in where:
            where[t] = len(texts)
            texts.append(t)
        return where[t]

    positive = [row(ex.positive) for ex in examples]
    original = [row(ex.original) for ex in examples]
    foils = [[row(f) for f in ex.foils[:max_foils]] + [-1] * (max_foils - len(ex.foils[:max_foils])) for ex in examples]
    presence = [row(ex.presence_negated if "omni_presence" in ex.eligible else None) for ex in examples]
    absence = [row(ex.absence_negated if "omni_absence" in ex.eligible else None) for ex in examples]
    mcq_example, mcq_choices = [], []
    for b, ex in enumerate(examples):
        if "mcq" not in ex.eligible:
            continue
        for true in (ex.positive, *ex.extra_positives):
            mcq_example.append(b)
            mcq_choices.append([row(true), *foils[b]])
    input_ids, mask = table.pad(texts)
    image_index = torch.tensor([ex.image for ex in examples])
    kept = [ex.distractors[:max_distractors] if "distractor" in ex.eligible else () for ex in examples]
    distractors = torch.tensor([[*d, *[-1] * (max_distractors - len(d))] for d in kept],
                               dtype=torch.long).reshape(len(examples), max_distractors)
    index = torch.tensor(list(example_index) if example_index is not None else [-1] * len(examples), dtype=torch.long)
    return Batch(
        image_index=image_index,
        input_ids=input_ids,
        attention_mask=mask,
        positive=torch.tensor(positive),
        original=torch.tensor(original),
        foils=torch.tensor(foils, dtype=torch.long).reshape(len(examples), max_foils),
        presence_negated=torch.tensor(presence),
        absence_negated=torch.tensor(absence),
        mcq_example=torch.tensor(mcq_example, dtype=torch.long),  # may be empty: no example with foils
        mcq_choices=torch.tensor(mcq_choices, dtype=torch.long).reshape(len(mcq_example), 1 + max_foils),
        in_pool=torch.tensor(["infonce" in ex.eligible for ex in examples], dtype=torch.bool),
        distractors=distractors,
        example_index=index,
        **({} if targets is None else target_rows(targets, image_index, distractors, index)),
        **({} if targets is None or targets.split_target is None else
           {"split_mask": torch.tensor(["split_distill" in ex.eligible for ex in examples], dtype=torch.bool)}),
    )


def target_rows(targets: ExampleTargets, image_index: torch.Tensor, distractors: torch.Tensor,
                example_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch's rows of the precomputed targets (the `Batch` fields after `example_index`)."""
    if bool((example_index < 0).any()):
        raise ValueError("collate: targets need the examples' training-set indices (example_index)")
    out = {"image_emb": targets.images[image_index]}
    if targets.distractors:
        out["distractor_emb"] = targets.images[distractors.clamp_min(0)]
    for name in ("base_embed", "split_target", "states_ids", "states_mask", "states_target_ids", "states_target_mask",
                 "states_rows", "states_neg_ids", "states_neg_mask", "states_positions"):
        table = getattr(targets, name)
        if table is not None:
            out[name] = table[example_index]
    return out


def batch_indices(step: int, micro: int, n_examples: int, batch_size: int, grad_accum: int, seed: int) -> list[int]:
    """Global example indices of one micro-batch: a seeded permutation per epoch, consumed in order.

    A pure function of (step, micro), so a resumed run sees exactly the batches it would have seen.
    """
    flat = (step * grad_accum + micro) * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(flat + len(out), n_examples)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_examples, generator=g)
        take = min(batch_size - len(out), n_examples - offset)
        out += perm[offset: offset + take].tolist()
    return out


def states_tokens(tokenizer, examples: Sequence[Example], length: int, skip_pooled: bool = False
                  ) -> dict[str, torch.Tensor]:
    """The omit_states inputs of every example: its true caption and the splitter's affirmative part of it,
    padded to `length` positions as a diffusion pipeline pads prompts (an example with no negation keeps
    its own caption as target and is masked out by `states_rows`). `skip_pooled`: `states_positions`
    leaves out each true caption's pooled position, its end-of-text token (the last position the
    tokenizer's attention mask covers: CLIP's tokenizer ends every sequence, truncated or not, with it)."""
    def enc(texts):
        out = tokenizer(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return out.input_ids, out.attention_mask

    ids, mask = enc([ex.positive for ex in examples])
    tids, tmask = enc([ex.affirmative or ex.positive for ex in examples])
    nids, nmask = enc([ex.negated or "" for ex in examples])
    rows = torch.tensor(["omit_states" in ex.eligible for ex in examples], dtype=torch.bool)
    out = {"states_ids": ids, "states_mask": mask, "states_target_ids": tids, "states_target_mask": tmask,
           "states_rows": rows, "states_neg_ids": nids, "states_neg_mask": nmask}
    if skip_pooled:
        positions = torch.ones_like(ids, dtype=torch.bool)
        positions[torch.arange(len(ids)), mask.sum(-1) - 1] = False
        out["states_positions"] = positions
    return out
