"""NegRefCOCOg: crop every candidate box, score each crop against the phrase, predict the argmax;
correct iff it is `ref_bbox` (`scoring.pairwise_accuracy`)."""

from __future__ import annotations

from ..datasets import Loaded, ReferringItem
from ..encoder import Encoder, crop_key
from ..scoring import pairwise_accuracy
from .base import BenchOutput, number


def image_keys(data: Loaded[ReferringItem]) -> list[str]:
    return [crop_key(it.image, box) for it in data.items for box in it.boxes]


def evaluate(data: Loaded[ReferringItem], encoder: Encoder, key: str = "negrefcocog") -> BenchOutput:
    items = data.items
    keys = [crop_key(it.image, box) for it in items for box in it.boxes]
    crops = encoder.images(keys)
    scores = encoder.paired(crops, [it.phrase for it in items for _ in it.boxes])
    per_item, start = [], 0
    for it in items:
        per_item.append(scores[start: start + len(it.boxes)])
        start += len(it.boxes)
    preds = []
    for it, s in zip(items, per_item, strict=True):
        pick = int(s.argmax())
        preds.append({"id": it.id, "image": it.image, "phrase": it.phrase, "scores": s.tolist(),
                      "predicted_bbox": list(it.boxes[pick]), "ref_bbox": list(it.boxes[it.ref]),
                      "correct": pick == it.ref})
    acc = pairwise_accuracy(per_item, [it.ref for it in items])
    return BenchOutput({key: number(acc), f"{key}_items": len(items)}, preds)
