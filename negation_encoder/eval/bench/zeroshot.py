"""Zero-shot top-1 on an ImageNet-style folder with CLIP's template ensembling
(`scoring.zeroshot_predictions`: the templates' embeddings are averaged per class).

TEMPLATES is the 7-template subset the CLIP authors selected for ImageNet (their prompt-engineering
notebook); 7 keeps the text pass small for 1,000 classes while recovering most of the 80-template gain.
Split scoring does not apply: class prompts carry no negation, and the split scorer scores such a
caption as plain CLIP.
"""

from __future__ import annotations

from ..datasets import Loaded, ZeroshotSet
from ..encoder import Encoder
from ..scoring import zeroshot_accuracy, zeroshot_predictions
from .base import BenchOutput, number

TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def image_keys(data: Loaded[ZeroshotSet]) -> list[str]:
    return list(data.items[0].images)


def evaluate(data: Loaded[ZeroshotSet], encoder: Encoder, key: str = "zeroshot") -> BenchOutput:
    zs = data.items[0]
    image = encoder.images(zs.images)
    prompts = [t.format(name) for name in zs.classnames for t in TEMPLATES]
    class_emb = encoder.texts(prompts).reshape(len(zs.classnames), len(TEMPLATES), -1)
    pred = zeroshot_predictions(image, class_emb).tolist()
    ok = [p == y for p, y in zip(pred, zs.labels, strict=True)]
    metrics: dict[str, float | int | None] = {
        f"{key}_top1": number(zeroshot_accuracy(image, class_emb, zs.labels) if ok else float("nan")),
        f"{key}_items": len(ok), f"{key}_classes": len(zs.classnames)}
    preds = [{"image": im, "label": zs.classnames[y], "predicted": zs.classnames[p], "correct": c}
             for im, y, p, c in zip(zs.images, zs.labels, pred, ok, strict=True)]
    return BenchOutput(metrics, preds)
