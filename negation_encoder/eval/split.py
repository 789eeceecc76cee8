"""Split scoring: the training-free negation reader of DESIGN.md ("Split scoring"), for any encoder.

A caption is split (`negation_encoder.splitting`) into its affirmative part and negated concepts;
an image scores

    sim(image, affirmative) - w * max_c sim(image, "a photo of a {c}")

and a caption that negates nothing scores as plain CLIP (its own embedding). SpaceVLM ("Vision-Language
Models Can Understand Negation", 2025) reads negation this way with no training. `w` is fitted on
training data (`fit_split_weight`), never on benchmark items. Every benchmark scorer in this package
takes similarities, so a split score drops in wherever a cosine did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..splitting import RuleSplitter

CONCEPT_TEMPLATE = "a photo of a {}"
DEFAULT_WEIGHT_GRID = tuple(round(0.1 * i, 2) for i in range(0, 21))
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


def split_similarity(image: torch.Tensor, texts: SplitEmbeddings, weight: float) -> torch.Tensor:
    """(M, N) split scores of M images against N captions (the drop-in for `image @ text.T`)."""
    aff = image @ texts.affirmative.T
    per_concept = torch.einsum("md,nkd->mnk", image, texts.concepts)
    per_concept = per_concept.masked_fill(~texts.concept_mask[None], float("-inf"))
    penalty = per_concept.max(dim=-1).values.clamp_min(-1.0)  # rows with no concept: unused below
    split = aff - weight * penalty
    return torch.where(texts.has_negation[None, :], split, image @ texts.full.T)


def split_paired(image: torch.Tensor, texts: SplitEmbeddings, weight: float) -> torch.Tensor:
    """(N,) split score of image i against caption i (the drop-in for `(image * text).sum(-1)`)."""
    aff = (image * texts.affirmative).sum(-1)
    per_concept = torch.einsum("nd,nkd->nk", image, texts.concepts).masked_fill(~texts.concept_mask, float("-inf"))
    split = aff - weight * per_concept.max(dim=-1).values.clamp_min(-1.0)
    return torch.where(texts.has_negation, split, (image * texts.full).sum(-1))


@dataclass
class WeightFit:
    weight: float
    accuracy: float
    curve: dict[float, float]  # weight -> accuracy on the fitting data
    items: int


def fit_split_weight(image: torch.Tensor, choices: Sequence[SplitEmbeddings], correct: Sequence[int] | None = None,
                     grid: Sequence[float] = DEFAULT_WEIGHT_GRID) -> WeightFit:
    """Pick w on TRAINING data: per image, choices[c] row i is its c-th candidate caption and
    `correct[i]` (default 0) the true one; w maximises multiple-choice accuracy (smallest w on ties)."""
    n = image.shape[0]
    target = torch.as_tensor(list(correct) if correct is not None else [0] * n)
    curve: dict[float, float] = {}
    for w in grid:
        scores = torch.stack([split_paired(image, c, float(w)) for c in choices], dim=1)
        curve[float(w)] = (scores.argmax(dim=1) == target).float().mean().item() if n else float("nan")
    best = max(curve, key=lambda w: (curve[w], -w))
    return WeightFit(weight=best, accuracy=curve[best], curve=curve, items=n)
