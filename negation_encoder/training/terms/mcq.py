"""Per image, a softmax over its true caption(s) and its minimal foils (NegBench's multiple-choice form)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossTerm, Plan, StepOutputs, TermLoss
from .registry import register


class MultipleChoiceLoss(nn.Module):
    """Per image, cross-entropy over its true caption and its minimal foils.

    Kept out of the InfoNCE pool on purpose: short negations scored only against their own foils
    teach "there is no X" without letting near-duplicate captions collapse the text tower.
    `choices` is (B, C, D) with the true caption at index 0; `mask` (B, C) marks real choices.
    Rows with no foil contribute nothing.
    """

    def forward(self, image: torch.Tensor, choices: torch.Tensor, mask: torch.Tensor, logit_scale: torch.Tensor):
        logits = logit_scale * torch.einsum("bd,bcd->bc", image, choices)
        logits = logits.masked_fill(~mask, float("-inf"))
        has_foil = mask[:, 1:].any(dim=1)
        if not has_foil.any():
            return logits.new_zeros(())
        target = torch.zeros(int(has_foil.sum()), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits[has_foil], target)


@register
class MultipleChoice(LossTerm):
    """One question per caption true for the image (its true caption and any `extra_positives`, e.g. the
    affirmative twin of a presence foil): without such positives the term only ever pushes affirmative
    phrasings away from images."""

    name = "mcq"
    summary = "per image, softmax over its true caption(s) and its minimal foils (NegBench's MCQ form)"
    records = "records with foils: hard_negatives, or presence records"

    def __init__(self, config, train):
        super().__init__(config, train)
        self.loss = MultipleChoiceLoss()

    def eligible(self, example) -> bool:
        return bool(example.foils)

    def no_eligible_reason(self, n: int) -> str:
        return self.without(f"none of the {n} records has foils (hard_negatives, or a presence record)")

    def collate(self, examples, index, texts, foils):
        example, choices = [], []
        for b, ex in enumerate(examples):
            if self.name not in ex.eligible:
                continue
            for true in (ex.positive, *ex.extra_positives):
                example.append(b)
                choices.append([texts.row(true), *foils[b].tolist()])
        width = 1 + foils.shape[1]
        return {"example": torch.tensor(example, dtype=torch.long),  # may be empty: no example with foils
                "choices": torch.tensor(choices, dtype=torch.long).reshape(len(example), width)}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        mask = rows["choices"] >= 0
        choices = out.texts.embeds[rows["choices"].clamp_min(0)] * mask[..., None]
        loss = self.loss(batch.image_emb[rows["example"]], choices, mask, out.logit_scale)
        return TermLoss(loss, (rows["choices"][:, 1:] >= 0).any(dim=1).sum())
