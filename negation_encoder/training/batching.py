"""From NegationRecords to padded token batches: the rows every term shares, and each term's own rows.

Each record becomes one `Example`: the caption that is true for its image (the negated caption, or for
presence records the original), the original caption, its foils, and the splitter's reading of the true
caption. Which terms an example feeds is each term's `eligible` rule (`Example.eligible`).

Every distinct text is tokenized once up front; a batch is padded to its longest text, not to 77 tokens,
which is exact for the pooled output because CLIP's causal mask keeps later tokens out of the eos state.
`collate` lays out the rows all terms share (true captions, originals, foils) and then lets each term add
its own (`LossTerm.collate`): texts a term adds join the same padded table, so one forward encodes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.records import NegationRecord
from ..splitting import NegationSplit, split_negation


@dataclass(frozen=True)
class Example:
    """A record as the terms read it (term-agnostic: no term's rule is baked in)."""

    image: int  # index into the image-embedding table
    positive: str  # true for the image
    original: str  # the affirmative caption
    foils: tuple[str, ...]  # false for the image (a presence record's negated caption first)
    negated_caption: str
    negation_type: str
    source: str
    extra_positives: tuple[str, ...] = ()  # more captions true for the image
    distractor_keys: tuple[str, ...] = ()  # image keys: the scene plus the negated concept
    bare: bool = False  # the true caption affirms nothing ("a photo with no fork"): `NegationSplit.is_bare`
    has_negation: bool = False  # the splitter finds a negation in the true caption
    affirmative: str | None = None  # the splitter's affirmative part of `positive`, when it negates something
    negated: str | None = None  # its negated concepts joined by ", "
    eligible: frozenset[str] = frozenset()  # the enabled terms this example feeds

    @property
    def presence(self) -> bool:
        return self.negation_type == "presence"


def distractor_keys(rec: NegationRecord) -> tuple[str, ...]:
    """The record's `distractor_images` (images that contain the negated concept and share as much of the
    caption as possible), never its own image."""
    keys = rec.distractor_images or ()
    return tuple(str(k) for k in keys if isinstance(k, str) and k != rec.image)


def true_caption(rec: NegationRecord) -> str:
    """The caption that is true for the record's image: the original for presence records (their negated
    caption negates an object the image shows), the negated caption for every other type."""
    return rec.caption if rec.negation_type == "presence" else rec.negated_caption


def example_from_record(rec: NegationRecord, image_index: int, split: NegationSplit | None = None) -> Example:
    """The record as an `Example` (its `eligible` set is filled by `examples_from_records`)."""
    split = split if split is not None else split_negation(true_caption(rec))
    presence = rec.negation_type == "presence"
    return Example(
        image=image_index, positive=true_caption(rec), original=rec.caption,
        foils=(rec.negated_caption, *rec.hard_negatives) if presence else tuple(rec.hard_negatives),
        negated_caption=rec.negated_caption, negation_type=rec.negation_type, source=rec.source,
        extra_positives=tuple(rec.extra_positives or ()),
        distractor_keys=distractor_keys(rec), bare=split.is_bare, has_negation=split.has_negation,
        affirmative=split.affirmative if split.has_negation else None,
        negated=", ".join(split.negated) if split.has_negation else None)


def examples_from_records(records: Sequence[NegationRecord], terms: Sequence, image_index: dict[str, int] | None = None
                          ) -> list[Example]:
    """An `Example` per record, with the names of the `terms` it feeds. The splitter reads each distinct
    true caption once (about a millisecond a caption, and datasets repeat captions). `image_index` maps
    image keys to table rows (default: each record's own image, in first-seen order)."""
    splits: dict[str, NegationSplit] = {}
    index = image_index if image_index is not None else {k: i for i, k in enumerate(dict.fromkeys(r.image for r in records))}
    out = []
    for rec in records:
        text = true_caption(rec)
        if text not in splits:
            splits[text] = split_negation(text)
        ex = example_from_record(rec, index[rec.image], splits[text])
        fed = frozenset(t.name for t in terms if t.reads_records and t.eligible(ex))
        out.append(Example(**{**ex.__dict__, "eligible": fed}))
    return out


def eligible_counts(examples: Sequence[Example], terms: Sequence) -> dict[str, int]:
    """How many examples feed each record-reading term."""
    return {t.name: sum(t.name in ex.eligible for ex in examples) for t in terms if t.reads_records}


class TokenTable:
    """Token ids of every distinct text, computed once (the examples' texts up front, any text a term adds on
    first use); `pad()` builds a batch padded to the longest."""

    def __init__(self, tokenizer, texts: Sequence[str]):
        self.tokenizer = tokenizer
        self.ids: dict[str, list[int]] = {}
        self.pad_id = tokenizer.pad_token_id
        self._add(texts)

    def _add(self, texts: Sequence[str]) -> None:
        """Tokenize, in one call, the texts not in the table yet."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.ids]
        if missing:
            enc = self.tokenizer(missing, truncation=True, max_length=self.tokenizer.model_max_length)
            self.ids.update(zip(missing, enc.input_ids, strict=True))

    def pad(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self._add(texts)  # a text a term adds to the batch (`TextRows.row`) beyond the examples' own
        seqs = [self.ids[t] for t in texts]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return input_ids, mask


def example_texts(examples: Sequence[Example]) -> list[str]:
    """Every text a batch of these examples may hold."""
    out = []
    for ex in examples:
        out += [ex.positive, ex.original, *ex.foils, *ex.extra_positives]
    return out


class TextRows:
    """The distinct texts of one batch, in row order: `row(text)` is the text's row (added on first use)."""

    def __init__(self):
        self.texts: list[str] = []
        self._where: dict[str, int] = {}

    def row(self, text: str | None) -> int:
        """The text's row, or -1 for None (no text)."""
        if text is None:
            return -1
        if text not in self._where:
            self._where[text] = len(self.texts)
            self.texts.append(text)
        return self._where[text]


@dataclass
class Batch:
    """One micro-batch: rows every term shares, then each term's own fields under `terms[name]`."""

    image_index: torch.Tensor  # (B,)
    input_ids: torch.Tensor  # (T, L) every distinct text of the batch
    attention_mask: torch.Tensor
    positive: torch.Tensor  # (B,) row of each example's true caption in input_ids
    original: torch.Tensor  # (B,)
    foils: torch.Tensor  # (B, F) rows, -1 where absent
    example_index: torch.Tensor  # (B,) index of each example in the training set (per-example targets)
    image_emb: torch.Tensor  # (B, D) each example's cached image embedding
    terms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to(self, device) -> Batch:
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v

        return Batch(**{k: move(v) for k, v in vars(self).items()})


def collate(examples: Sequence[Example], table: TokenTable, images: torch.Tensor, max_foils: int,
            example_index: Sequence[int], terms: Sequence = ()) -> Batch:
    """One batch of `examples` (rows `example_index` of the training set; `images` is the image-embedding
    table). The shared rows come first (true captions, originals, foils), then each term's fields in
    the order of `terms`; every text any of them names is one row of `input_ids`."""
    texts = TextRows()
    positive = [texts.row(ex.positive) for ex in examples]
    original = [texts.row(ex.original) for ex in examples]
    foils = [[texts.row(f) for f in ex.foils[:max_foils]] + [-1] * (max_foils - len(ex.foils[:max_foils]))
             for ex in examples]
    index = torch.tensor(list(example_index), dtype=torch.long)
    image_index = torch.tensor([ex.image for ex in examples])
    foil_rows = torch.tensor(foils, dtype=torch.long).reshape(len(examples), max_foils)
    own = {t.name: t.collate(examples, index, texts, foil_rows) for t in terms}
    input_ids, mask = table.pad(texts.texts)
    return Batch(image_index=image_index, input_ids=input_ids, attention_mask=mask, positive=torch.tensor(positive),
                 original=torch.tensor(original), foils=foil_rows, example_index=index,
                 image_emb=images[image_index], terms=own)


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
