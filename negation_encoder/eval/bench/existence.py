"""VALSE existence: correct iff score(image, caption) > score(image, foil) (`scoring.existence_accuracy`)."""

from __future__ import annotations

from ..datasets import ExistenceItem, Loaded
from ..encoder import Encoder
from ..scoring import existence_accuracy
from .base import BenchOutput, number


def image_keys(data: Loaded[ExistenceItem]) -> list[str]:
    return [it.image for it in data.items]


def evaluate(data: Loaded[ExistenceItem], encoder: Encoder, key: str = "valse_existence") -> BenchOutput:
    items = data.items
    image = encoder.images([it.image for it in items])
    sim_caption = encoder.paired(image, [it.caption for it in items])
    sim_foil = encoder.paired(image, [it.foil for it in items])
    preds = [{"id": it.id, "image": it.image, "caption": it.caption, "foil": it.foil, "score_caption": float(c),
              "score_foil": float(f), "correct": bool(c > f)}
             for it, c, f in zip(items, sim_caption.tolist(), sim_foil.tolist(), strict=True)]
    return BenchOutput({key: number(existence_accuracy(sim_caption, sim_foil)), f"{key}_items": len(items)}, preds)
