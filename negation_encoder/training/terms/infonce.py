"""InfoNCE on the caption that is true for each image (NegationCLIP fine-tunes CLIP's own loss on negated
captions, vision frozen), optionally with each image's foils in its image-to-text pool."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...configs import option
from ..gather import gather
from ..losses import multi_positive_ce, nan_to_zero
from .base import LossTerm, Plan, StepOutputs, TermConfig, TermLoss
from .registry import register


class ClipInfoNCE(nn.Module):
    """Symmetric InfoNCE (CLIP). Labels come from image ids, so an image that appears twice in a batch is a
    positive for both of its captions rather than a false negative.

    image_ids / text_ids name the image behind each row / column; equal ids are positives. Text ids
    of -1 mark captions kept out of the pool (no row, no column): a bare "no fork here" cannot pick
    its image out of a batch and only drags the text tower towards a collapse.
    """

    def get_logits(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor):
        """Logits of local rows against (gathered) columns."""
        return logit_scale * image @ text.T

    def forward(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, *, image_ids: torch.Tensor,
                text_ids: torch.Tensor, all_image: torch.Tensor | None = None, all_text: torch.Tensor | None = None,
                all_image_ids: torch.Tensor | None = None, all_text_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Local rows against all columns (`all_*` default to the local tensors: one process)."""
        all_image = image if all_image is None else all_image
        all_text = text if all_text is None else all_text
        all_image_ids = image_ids if all_image_ids is None else all_image_ids
        all_text_ids = text_ids if all_text_ids is None else all_text_ids
        return self._symmetric(self.get_logits(image, all_text, logit_scale),
                               self.get_logits(text, all_image, logit_scale),
                               image_ids, text_ids, all_image_ids, all_text_ids, all_text_ids >= 0)

    @staticmethod
    def _symmetric(i2t, t2i, image_ids, text_ids, all_image_ids, all_text_ids, col_ok) -> torch.Tensor:
        """Mean of the two directions; `col_ok` marks image-to-text columns in the pool, and columns past
        `all_text_ids` (extra negatives such as foils) are never positives."""
        pos_i = image_ids[:, None] == all_text_ids[None, :]
        extra = i2t.shape[1] - pos_i.shape[1]
        if extra:
            pos_i = torch.cat([pos_i, pos_i.new_zeros(pos_i.shape[0], extra)], dim=1)
        rows_i = pos_i.any(dim=1)  # an image whose captions are all out of the pool has no target
        loss_i = multi_positive_ce(i2t[rows_i], pos_i[rows_i], col_ok[None, :].expand(int(rows_i.sum()), -1))
        rows_t = text_ids >= 0
        loss_t = multi_positive_ce(t2i[rows_t], text_ids[rows_t, None] == all_image_ids[None, :])
        return (nan_to_zero(loss_i) + nan_to_zero(loss_t)) / 2


class HardNegativeInfoNCE(ClipInfoNCE):
    """InfoNCE whose image-to-text pool also holds each image's foils (negation hard negatives).

    Foils join the image-to-text direction only: a foil has no image of its own to retrieve.
    `foils` is (rows, F, D) with `foil_mask` (rows, F) marking real foils; a row's foils are negatives
    for every image (they are false for their own image and unrelated to the others).
    """

    def forward(self, image, text, logit_scale, *, image_ids, text_ids, foils, foil_mask,
                all_image=None, all_text=None, all_image_ids=None, all_text_ids=None,
                all_foils=None, all_foil_mask=None):
        all_image = image if all_image is None else all_image
        all_text = text if all_text is None else all_text
        all_image_ids = image_ids if all_image_ids is None else all_image_ids
        all_text_ids = text_ids if all_text_ids is None else all_text_ids
        all_foils = foils if all_foils is None else all_foils
        all_foil_mask = foil_mask if all_foil_mask is None else all_foil_mask
        flat_foils = all_foils.reshape(-1, all_foils.shape[-1])
        i2t = self.get_logits(image, torch.cat([all_text, flat_foils]), logit_scale)
        col_ok = torch.cat([all_text_ids >= 0, all_foil_mask.reshape(-1)])
        return self._symmetric(i2t, self.get_logits(text, all_image, logit_scale), image_ids, text_ids,
                               all_image_ids, all_text_ids, col_ok)


@dataclass
class InfoNCEConfig(TermConfig):
    hard_negatives: bool = option(False, "each image's foils join its image-to-text pool")
    on_bare: bool = option(False, "bare negations (true captions that affirm nothing: 'a photo with no fork') "
                           "join the pool too")


@register
class InfoNCE(LossTerm):
    name = "infonce"
    config_class = InfoNCEConfig
    summary = "symmetric InfoNCE on the caption that is true for each image (NegationCLIP)"
    records = "every record, except bare negations ('a photo with no fork') unless on_bare"

    def __init__(self, config: InfoNCEConfig, train):
        super().__init__(config, train)
        self.loss = HardNegativeInfoNCE() if config.hard_negatives else ClipInfoNCE()

    def eligible(self, example) -> bool:
        return self.config.on_bare or not example.bare

    def no_eligible_reason(self, n: int) -> str:
        return (f"all {n} true captions are bare negations (they affirm nothing; set objective.infonce.on_bare: "
                "true to use them)")

    def collate(self, examples, index, texts, foils):
        return {"in_pool": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        emb, ids, in_pool = out.texts.embeds, batch.image_index, self.rows(batch)["in_pool"]
        pos = emb[batch.positive]
        text_ids = torch.where(in_pool, ids, torch.full_like(ids, -1))
        kwargs = dict(image_ids=ids, text_ids=text_ids, all_image=gather(batch.image_emb), all_text=gather(pos),
                      all_image_ids=gather(ids), all_text_ids=gather(text_ids))
        if self.config.hard_negatives:
            foil_mask = batch.foils >= 0
            foils = emb[batch.foils.clamp_min(0)] * foil_mask[..., None]
            kwargs.update(foils=foils, foil_mask=foil_mask, all_foils=gather(foils), all_foil_mask=gather(foil_mask))
        return TermLoss(self.loss(batch.image_emb, pos, out.logit_scale, **kwargs), in_pool.sum())
