"""NegBench MCQ: argmax over the four captions (`scoring.mcq_scores`): total accuracy, accuracy per
correct-answer template, and which template the wrong picks had.

The wrong-pick breakdown needs each option's template. NegBench's files put the correct answer at 0
and its wrong answers in a fixed order (1 hybrid, 2 positive, 3 negative: create_mcq.py and
mcq.py's error map); the breakdown is reported only when every item follows that layout.
"""

from __future__ import annotations

import torch

from ..datasets import Loaded, MCQItem
from ..encoder import Encoder
from ..scoring import mcq_scores
from .base import BenchOutput, number

WRONG_OPTION_TEMPLATES = ("hybrid", "positive", "negative")  # options 1, 2, 3 when the answer is option 0


def image_keys(data: Loaded[MCQItem]) -> list[str]:
    return [it.image for it in data.items]


def evaluate(data: Loaded[MCQItem], encoder: Encoder, key: str = "negbench_mcq") -> BenchOutput:
    items = data.items
    image = encoder.images([it.image for it in items])
    sims = torch.stack([encoder.paired(image, [it.options[k] for it in items]) for k in range(4)], dim=1) \
        if items else torch.empty(0, 4)
    correct = [it.correct for it in items]
    templates = [it.template for it in items]
    option_templates = [(it.template, *WRONG_OPTION_TEMPLATES) for it in items] \
        if items and all(c == 0 for c in correct) else None
    scores = mcq_scores(sims, correct, templates, option_templates)
    metrics: dict[str, float | int | None] = {key + name[len("mcq"):]: number(v) for name, v in scores.items()}
    metrics[f"{key}_items"] = len(items)
    for t in ("positive", "negative", "hybrid"):
        metrics[f"{key}_{t}_items"] = templates.count(t)
    preds = [{"id": it.id, "image": it.image, "template": it.template, "correct_answer": it.correct,
              "predicted": int(row.argmax()), "scores": row.tolist(), "correct": int(row.argmax()) == it.correct}
             for it, row in zip(items, sims, strict=True)]
    return BenchOutput(metrics, preds)
