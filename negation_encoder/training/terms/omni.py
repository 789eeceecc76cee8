"""Omni-NegCLIP's two objectives: presence-based (push an image away from the caption negating an object
it contains) and absence-based (align an image with the caption negating an absent object, keeping that
caption apart from the original in text space)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...configs import option
from ..gather import gather
from ..losses import multi_positive_ce, nan_to_zero
from .base import LossTerm, Plan, StepOutputs, TermConfig, TermLoss
from .registry import register


class OmniPresenceLoss(nn.Module):
    """Pull each image to its original caption and push it away from the caption that negates an object
    it contains (plus the batch's other captions). `negated` (B, D) holds each image's presence-negated
    caption, `has_negated` (B,) which rows have one.

    No early return on a batch without such rows: the gathered columns must stay in the graph, so that
    every process runs their all-gather's backward (a collective) whatever rows it drew."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, image, original, negated, *, has_negated, image_ids, all_original=None, all_original_ids=None):
        all_original = original if all_original is None else all_original
        all_original_ids = image_ids if all_original_ids is None else all_original_ids
        image, negated, ids = image[has_negated], negated[has_negated], image_ids[has_negated]
        logits = torch.cat([image @ all_original.T, (image * negated).sum(-1, keepdim=True)], 1) / self.temperature
        pos = torch.cat([ids[:, None] == all_original_ids[None, :],
                         torch.zeros(len(ids), 1, dtype=torch.bool, device=image.device)], 1)
        return nan_to_zero(multi_positive_ce(logits, pos))  # the mean over no row is NaN: 0


class OmniAbsenceLoss(nn.Module):
    """An image should match both its original caption and the caption negating an absent object, while
    the two captions stay apart in text space (hinge on their cosine above `margin`), so "a dog" and
    "a dog, no cat" do not collapse. No early return (see `OmniPresenceLoss`)."""

    def __init__(self, temperature: float = 0.07, margin: float = 0.8, separation_weight: float = 1.0):
        super().__init__()
        self.temperature, self.margin, self.separation_weight = temperature, margin, separation_weight

    def forward(self, image, original, negated, *, has_negated, image_ids,
                all_original=None, all_negated=None, all_ids=None, all_has_negated=None):
        all_original = original if all_original is None else all_original
        all_negated = negated if all_negated is None else all_negated
        all_ids = image_ids if all_ids is None else all_ids
        all_has_negated = has_negated if all_has_negated is None else all_has_negated
        img, ids = image[has_negated], image_ids[has_negated]
        pos = ids[:, None] == all_ids[None, :]
        align_o = multi_positive_ce(img @ all_original.T / self.temperature, pos)
        valid = all_has_negated[None, :].expand(len(ids), -1)
        align_n = multi_positive_ce(img @ all_negated.T / self.temperature, pos & valid, valid)
        cos = (original[has_negated] * negated[has_negated]).sum(-1)
        separation = F.relu(cos - self.margin).mean()
        return nan_to_zero((align_o + align_n) / 2 + self.separation_weight * separation)  # no row: NaN -> 0


@dataclass
class OmniPresenceConfig(TermConfig):
    temperature: float = option(0.07, "softmax temperature")

    def problems(self) -> list[str]:
        p = super().problems()
        if not self.temperature > 0:
            p.append(f"temperature must be > 0, got {self.temperature!r}")
        return p


@dataclass
class OmniAbsenceConfig(OmniPresenceConfig):
    margin: float = option(0.8, "cosine above which the original and the negated caption are pushed apart")


class _NegatedCaption(LossTerm):
    """Both objectives read the record's negated caption beside its original, on records of one type."""

    negation_type: str

    def eligible(self, example) -> bool:
        return example.negation_type == self.negation_type

    def no_eligible_reason(self, n: int) -> str:
        article = "an" if self.negation_type[0] in "aeiou" else "a"
        return self.without(f"none of the {n} records is {article} {self.negation_type} record "
                            f"(negation_type {self.negation_type!r})")

    def collate(self, examples, index, texts, foils):
        return {"negated": torch.tensor([texts.row(ex.negated_caption if self.name in ex.eligible else None)
                                         for ex in examples])}


@register
class OmniPresence(_NegatedCaption):
    name = "omni_presence"
    config_class = OmniPresenceConfig
    negation_type = "presence"
    summary = "pull the image to its caption, push it from the caption negating a present object (Omni-NegCLIP)"
    records = "presence records"

    def __init__(self, config: OmniPresenceConfig, train):
        super().__init__(config, train)
        self.loss = OmniPresenceLoss(config.temperature)

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        emb, ids, rows = out.texts.embeds, batch.image_index, self.rows(batch)["negated"]
        orig = emb[batch.original]
        has = rows >= 0
        loss = self.loss(batch.image_emb, orig, emb[rows.clamp_min(0)], has_negated=has, image_ids=ids,
                         all_original=gather(orig), all_original_ids=gather(ids))
        return TermLoss(loss, has.sum())


@register
class OmniAbsence(_NegatedCaption):
    name = "omni_absence"
    config_class = OmniAbsenceConfig
    negation_type = "absence"
    summary = "align the image with both its caption and the absence-negated one, keep the two texts apart"
    records = "absence records"

    def __init__(self, config: OmniAbsenceConfig, train):
        super().__init__(config, train)
        self.loss = OmniAbsenceLoss(config.temperature, config.margin)

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        emb, ids, rows = out.texts.embeds, batch.image_index, self.rows(batch)["negated"]
        orig = emb[batch.original]
        has = rows >= 0
        neg = emb[rows.clamp_min(0)]
        loss = self.loss(batch.image_emb, orig, neg, has_negated=has, image_ids=ids, all_original=gather(orig),
                         all_negated=gather(neg), all_ids=gather(ids), all_has_negated=gather(has))
        return TermLoss(loss, has.sum())
