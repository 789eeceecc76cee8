"""Split scoring: the training-free negation reader of docs/design.md ("Split scoring"), for any encoder.

A caption is split (`negation_encoder.splitting`) into its affirmative part and negated concepts;
an image scores

    sim(image, affirmative) - w * (max_c sim(image, "a photo of a {c}") - b)

and a caption that negates nothing scores as plain CLIP (its own embedding). SpaceVLM ("Vision-Language
Models Can Understand Negation", 2025) reads negation this way with no training. `w` and the threshold
`b` (docs/design.md: "w (and any threshold)") are fitted on training data (`fit_split_weight`), never on
benchmark items. Every benchmark scorer takes similarities, so a split score drops in wherever a
cosine did.

`SplitScorer` is the one object that holds a fitted reader (weight, offset, concept template) and scores
with it; it is saved beside an encoder checkpoint as `split_scorer.json`, which `negenc eval
--split-scoring` reads, so a testbed split result reproduces on the papers' files. The trainer's
split-distillation targets are read through the same `encode_split`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .errors import DataError, InputError
from .splitting import RuleSplitter

CONCEPT_TEMPLATE = "a photo of a {}"
DEFAULT_WEIGHT_GRID = tuple(round(0.1 * i, 2) for i in range(0, 21))
DEFAULT_OFFSET_GRID = tuple(round(0.05 * i, 2) for i in range(0, 13))
_DETERMINERS = ("a ", "an ", "the ", "some ", "any ")


def concept_prompt(concept: str, template: str = CONCEPT_TEMPLATE) -> str:
    """'fork' -> 'a photo of a fork'; a concept that brings its own determiner keeps it."""
    if concept.lower().startswith(_DETERMINERS) and template.endswith("a {}"):
        return template[: -len("a {}")] + concept
    return template.format(concept)


@dataclass
class SplitEmbeddings:
    """Normalised embeddings of N captions as the split scorer reads them."""

    full: torch.Tensor  # (N, D) the caption itself: its score when it negates nothing
    affirmative: torch.Tensor  # (N, D)
    concepts: torch.Tensor  # (N, K, D) one row per negated concept, zero-padded
    concept_mask: torch.Tensor  # (N, K) bool
    has_negation: torch.Tensor  # (N,) bool

    def __len__(self) -> int:
        return self.full.shape[0]

    def index(self, rows) -> SplitEmbeddings:
        return SplitEmbeddings(self.full[rows], self.affirmative[rows], self.concepts[rows], self.concept_mask[rows],
                               self.has_negation[rows])


def encode_split(texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor], splitter=None,
                 template: str = CONCEPT_TEMPLATE) -> SplitEmbeddings:
    """Split every caption and embed each distinct text once with `encode` (list[str] -> (n, D) normalised)."""
    splits = (splitter or RuleSplitter()).split_batch(list(texts))
    k = max((len(s.negated) for s in splits), default=0)
    needed = list(dict.fromkeys([*texts, *(s.affirmative for s in splits),
                                 *(concept_prompt(c, template) for s in splits for c in s.negated)]))
    emb = encode(needed)
    row = {t: i for i, t in enumerate(needed)}
    n, d = len(texts), emb.shape[-1]
    concepts = torch.zeros(n, max(k, 1), d, dtype=emb.dtype)
    mask = torch.zeros(n, max(k, 1), dtype=torch.bool)
    for i, s in enumerate(splits):
        for j, c in enumerate(s.negated):
            concepts[i, j] = emb[row[concept_prompt(c, template)]]
            mask[i, j] = True
    return SplitEmbeddings(
        full=emb[[row[t] for t in texts]] if texts else emb[:0],
        affirmative=emb[[row[s.affirmative] for s in splits]] if texts else emb[:0],
        concepts=concepts, concept_mask=mask,
        has_negation=torch.tensor([s.has_negation for s in splits], dtype=torch.bool),
    )


def split_similarity(image: torch.Tensor, texts: SplitEmbeddings, weight: float, offset: float = 0.0) -> torch.Tensor:
    """(M, N) split scores of M images against N captions (the drop-in for `image @ text.T`):
    sim(image, affirmative) - weight * (max_c sim(image, concept c) - offset). The offset (a threshold
    fitted with the weight) puts negated and plain captions on one scale: an absent concept's cosine
    is not 0, and without it every negation would cost the caption `weight` times that cosine."""
    aff = image @ texts.affirmative.T
    per_concept = torch.einsum("md,nkd->mnk", image, texts.concepts)
    per_concept = per_concept.masked_fill(~texts.concept_mask[None], float("-inf"))
    penalty = per_concept.max(dim=-1).values.clamp_min(-1.0)  # rows with no concept: unused below
    split = aff - weight * (penalty - offset)
    return torch.where(texts.has_negation[None, :], split, image @ texts.full.T)


def _paired_parts(image: torch.Tensor, texts: SplitEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(affirmative cosine, max negated-concept cosine, plain cosine) of image i against caption i."""
    aff = (image * texts.affirmative).sum(-1)
    per_concept = torch.einsum("nd,nkd->nk", image, texts.concepts).masked_fill(~texts.concept_mask, float("-inf"))
    return aff, per_concept.max(dim=-1).values.clamp_min(-1.0), (image * texts.full).sum(-1)


def split_paired(image: torch.Tensor, texts: SplitEmbeddings, weight: float, offset: float = 0.0) -> torch.Tensor:
    """(N,) split score of image i against caption i (the drop-in for `(image * text).sum(-1)`)."""
    aff, penalty, plain = _paired_parts(image, texts)
    return torch.where(texts.has_negation, aff - weight * (penalty - offset), plain)


@dataclass
class WeightFit:
    weight: float
    accuracy: float
    curve: dict[float, float]  # weight -> best accuracy over the offsets, on the fitting data
    items: int
    offset: float = 0.0


def fit_split_weight(image: torch.Tensor, choices: Sequence[SplitEmbeddings], correct: Sequence[int] | None = None,
                     grid: Sequence[float] = DEFAULT_WEIGHT_GRID, offsets: Sequence[float] = (0.0,)) -> WeightFit:
    """Pick w (and the offset) on TRAINING data: per image, choices[c] row i is its c-th candidate caption
    and `correct[i]` (default 0) the true one; (w, offset) maximise multiple-choice accuracy (on ties the
    smallest w, then the smallest offset)."""
    n = image.shape[0]
    target = torch.as_tensor(list(correct) if correct is not None else [0] * n)
    parts = [_paired_parts(image, c) for c in choices]  # the cosines once; the grid is arithmetic on them
    acc: dict[tuple[float, float], float] = {}
    for w in grid:
        for b in offsets:
            scores = torch.stack([torch.where(c.has_negation, aff - float(w) * (pen - float(b)), plain)
                                  for c, (aff, pen, plain) in zip(choices, parts, strict=True)], dim=1)
            acc[(float(w), float(b))] = (scores.argmax(dim=1) == target).float().mean().item() if n else float("nan")
    best = max(acc, key=lambda wb: (acc[wb], -wb[0], -wb[1]))
    curve = {float(w): max(acc[(float(w), float(b))] for b in offsets) for w in grid}
    return WeightFit(weight=best[0], accuracy=acc[best], curve=curve, items=n, offset=best[1])


def record_choices(rec) -> tuple[list[str], int] | None:
    """A NegationRecord as a multiple-choice item for fitting w: (captions, index of the true one), or None
    when it has no foil. Absence/attribute records: the negated caption is true, its foils false;
    presence records: the original caption is true and the caption negating a present object false."""
    if rec.negation_type == "presence":
        return [rec.caption, rec.negated_caption, *rec.hard_negatives], 0
    if not rec.hard_negatives:
        return None
    return [rec.negated_caption, *rec.hard_negatives], 0


def fit_split_weight_on_records(model, tokenizer, image_processor, records: Sequence, load_image: Callable,
                                limit: int = 1000, seed: int = 0, splitter=None,
                                grid: Sequence[float] = DEFAULT_WEIGHT_GRID,
                                offsets: Sequence[float] = DEFAULT_OFFSET_GRID) -> WeightFit:
    """Fit w on TRAINING records (never benchmark items): up to `limit` records with foils, drawn with
    `seed`, each scored as a multiple choice between its true caption and its foils."""
    from .encoding import encode_images, encode_texts

    items = [(rec, c) for rec in records if (c := record_choices(rec)) is not None]
    if len(items) > limit:
        pick = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
        items = [items[i] for i in sorted(pick)]
    if not items:
        raise DataError("no record with foils to fit the split weight on")
    width = max(len(c[0]) for _, c in items)
    keys = list(dict.fromkeys(rec.image for rec, _ in items))
    image_emb = encode_images(model, image_processor, [load_image(k) for k in keys])
    row = {k: i for i, k in enumerate(keys)}
    images = image_emb[[row[rec.image] for rec, _ in items]]
    # pad every item to `width` choices by repeating its last foil (a duplicate never changes the argmax)
    choices = [[texts[min(j, len(texts) - 1)] for j in range(width)] for _, (texts, _) in items]
    columns = [encode_split([c[j] for c in choices], lambda t: encode_texts(model, tokenizer, t), splitter)
               for j in range(width)]
    return fit_split_weight(images, columns, [c for _, (_, c) in items], grid, offsets)


SPLIT_SCORER_FILE = "split_scorer.json"


@dataclass
class SplitScorer:
    """A fitted split reader: score = sim(image, affirmative) - weight * (max_c sim(image, concept c) - offset).

    `fit` records how the weight and offset were chosen (items, training accuracy, the data), so the file
    beside a checkpoint says where its numbers came from. Weight 0 means the affirmative part alone: the
    negated concepts are dropped, which still beats a negation-blind encoder that reads "no fork" as
    "fork" (the fitted weight is 0 when the training records favour that).
    """

    weight: float
    offset: float = 0.0
    template: str = CONCEPT_TEMPLATE
    splitter: str = "rule"
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("weight", "offset"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"split scorer: {name} must be a finite number, got {v!r}")
        if self.weight < 0:
            raise InputError(f"split scorer: weight must be >= 0, got {self.weight}")
        if "{}" not in self.template:
            raise InputError(f"split scorer: template must hold '{{}}' for the concept, got {self.template!r}")
        self.weight, self.offset = float(self.weight), float(self.offset)

    def encode(self, texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor], splitter=None) -> SplitEmbeddings:
        return encode_split(texts, encode, splitter, self.template)

    def similarity(self, image: torch.Tensor, texts: SplitEmbeddings) -> torch.Tensor:
        """(M images, N captions) scores."""
        return split_similarity(image, texts, self.weight, self.offset)

    def paired(self, image: torch.Tensor, texts: SplitEmbeddings) -> torch.Tensor:
        """(N,) score of image i against caption i."""
        return split_paired(image, texts, self.weight, self.offset)

    @classmethod
    def from_fit(cls, fit: WeightFit, template: str = CONCEPT_TEMPLATE, **info) -> SplitScorer:
        return cls(fit.weight, fit.offset, template, fit={"items": fit.items, "train_accuracy": round(fit.accuracy, 4),
                                                          **info})

    # ---- the file beside a checkpoint
    def save(self, folder: str | os.PathLike) -> Path:
        from .runio import atomic_write_json

        return atomic_write_json(Path(folder) / SPLIT_SCORER_FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SplitScorer:
        path = Path(folder) / SPLIT_SCORER_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise InputError(f"{folder}: no {SPLIT_SCORER_FILE} (a split reader fitted on training data); pass "
                             "--split-weight W, or fit one with SplitScorer.fit_on_records") from None
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
        if not isinstance(obj, dict) or "weight" not in obj:
            raise InputError(f"{path}: expected an object with 'weight' (and 'offset', 'template')")
        unknown = set(obj) - {"weight", "offset", "template", "splitter", "fit"}
        if unknown:
            raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**obj)

    @classmethod
    def exists(cls, folder: str | os.PathLike) -> bool:
        return (Path(folder) / SPLIT_SCORER_FILE).is_file()

    @classmethod
    def fit_on_records(cls, model, tokenizer, image_processor, records: Sequence, load_image: Callable,
                       limit: int = 1000, seed: int = 0, **info) -> SplitScorer:
        """Fitted on TRAINING records (see `fit_split_weight_on_records`)."""
        fit = fit_split_weight_on_records(model, tokenizer, image_processor, records, load_image, limit=limit, seed=seed)
        return cls.from_fit(fit, seed=seed, **info)
