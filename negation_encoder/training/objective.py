"""The weighted objective of a fine-tuning run: the configured loss terms (`losses.TERMS`) on one batch.

Rows are this process's examples; columns of the contrastive terms are gathered from every process
(`distributed.gather`, with gradients), and each term's local mean is rescaled so that, after DDP
averages gradients, the result is the mean over all processes' rows. Like open_clip's losses it owns
no model: it takes text embeddings and hidden states, and reads every target (cached image embeddings,
the frozen base's per-example readings) from the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from .batching import Batch
from .config import TrainConfig
from .distributed import gather, world_size
from .losses import (
    TERMS,
    ClipInfoNCE,
    DistractorLoss,
    EmbeddingPreservationLoss,
    HardNegativeInfoNCE,
    MultipleChoiceLoss,
    OmniAbsenceLoss,
    OmniPresenceLoss,
    PreservationLoss,
    SegmentationLoss,
    SplitDistillLoss,
    StateDistillationLoss,
)


class NegationObjective(nn.Module):
    """sum over `TERMS` of weight * term, for the weights of a `TrainConfig` (0 turns a term off)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.weights = {t: float(getattr(cfg, t)) for t in TERMS}
        self.hard_negatives = cfg.hard_negatives
        self.infonce = HardNegativeInfoNCE() if cfg.hard_negatives else ClipInfoNCE()
        self.mcq = MultipleChoiceLoss()
        self.presence = OmniPresenceLoss(cfg.omni_temperature)
        self.absence = OmniAbsenceLoss(cfg.omni_temperature, cfg.omni_margin)
        self.preserve = PreservationLoss()
        self.distractor = DistractorLoss()
        self.split_distill = SplitDistillLoss()
        self.preserve_embeds = EmbeddingPreservationLoss()
        self.omit_states = StateDistillationLoss()
        self.seg_loss = SegmentationLoss(cfg.seg_dice, cfg.seg_choice, cfg.seg_affirm)

    def forward(self, emb: torch.Tensor, hidden: torch.Tensor, batch: Batch, logit_scale: torch.Tensor,
                base_hidden: torch.Tensor | None = None,
                states: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
                seg: tuple | None = None,
                unet: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`emb` (T, D) normalised embeddings of the batch's distinct texts and `hidden` their last hidden
        states; every target comes with the batch (`batch.image_emb`, and for the terms that need them
        `distractor_emb`, `split_target`/`split_mask`, `base_embed`). `base_hidden` is the frozen base's
        hidden states of the original captions, computed in the step for the preservation term (storing
        77 x D states per example would not scale to a real CLIP). `states` is (the tower's states of the
        true captions at the pipeline's padding, the frozen base's states of their affirmative parts, the
        tower's states of those affirmative parts or None) for omit_states and preserve_states; `seg` is (a
        frozen CLIPSeg's logits on this step's referring samples, their masks, their other objects' masks,
        all-zero where a record names none, and for seg_affirm (the tower's projected embeddings of the samples,
        the base's of their affirmative expressions, which have one) or None)."""
        w = self.weights
        ids = batch.image_index
        image_emb = batch.image_emb
        if image_emb is None:
            raise ValueError("NegationObjective: the batch carries no image embeddings (collate with targets)")
        parts: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        if w["infonce"]:
            pos = emb[batch.positive]
            text_ids = torch.where(batch.in_pool, ids, torch.full_like(ids, -1))
            kwargs = dict(image_ids=ids, text_ids=text_ids, all_image=gather(image_emb), all_text=gather(pos),
                          all_image_ids=gather(ids), all_text_ids=gather(text_ids))
            if self.hard_negatives:
                foil_mask = batch.foils >= 0
                foils = emb[batch.foils.clamp_min(0)] * foil_mask[..., None]
                kwargs.update(foils=foils, foil_mask=foil_mask, all_foils=gather(foils), all_foil_mask=gather(foil_mask))
            parts["infonce"] = self.infonce(image_emb, pos, logit_scale, **kwargs)
            counts["infonce"] = batch.in_pool.sum()
        if w["mcq"]:
            mask = batch.mcq_choices >= 0
            choices = emb[batch.mcq_choices.clamp_min(0)] * mask[..., None]
            parts["mcq"] = self.mcq(image_emb[batch.mcq_example], choices, mask, logit_scale)
            counts["mcq"] = (batch.mcq_choices[:, 1:] >= 0).any(dim=1).sum()
        if w["omni_presence"] or w["omni_absence"]:
            orig = emb[batch.original]
            all_orig, all_ids = gather(orig), gather(ids)
            if w["omni_presence"]:
                has = batch.presence_negated >= 0
                neg = emb[batch.presence_negated.clamp_min(0)]
                parts["omni_presence"] = self.presence(image_emb, orig, neg, has_negated=has, image_ids=ids,
                                                       all_original=all_orig, all_original_ids=all_ids)
                counts["omni_presence"] = has.sum()
            if w["omni_absence"]:
                has = batch.absence_negated >= 0
                neg = emb[batch.absence_negated.clamp_min(0)]
                parts["omni_absence"] = self.absence(image_emb, orig, neg, has_negated=has, image_ids=ids,
                                                     all_original=all_orig, all_negated=gather(neg), all_ids=all_ids,
                                                     all_has_negated=gather(has))
                counts["omni_absence"] = has.sum()
        if w["distractor"] and batch.distractor_emb is not None:
            mask = batch.distractors >= 0
            parts["distractor"] = self.distractor(emb[batch.positive], image_emb, batch.distractor_emb, mask,
                                                  logit_scale)
            counts["distractor"] = mask.any(dim=1).sum()
        if w["split_distill"] and batch.split_target is not None:
            parts["split_distill"] = self.split_distill(emb[batch.positive], batch.split_target, batch.split_mask)
            counts["split_distill"] = batch.split_mask.sum()
        if w["preserve_embeds"] and batch.base_embed is not None:
            every = torch.ones(len(batch.base_embed), dtype=torch.bool, device=batch.base_embed.device)
            parts["preserve_embeds"] = self.preserve_embeds(emb[batch.original], batch.base_embed, every)
            counts["preserve_embeds"] = every.sum()
        if w["preserve"] and base_hidden is not None:
            rows = batch.original
            parts["preserve"] = self.preserve(hidden[rows], base_hidden, batch.attention_mask[rows])
            counts["preserve"] = batch.attention_mask[rows].sum()
        if w["omit_states"] and states is not None:
            rows = batch.states_rows
            parts["omit_states"] = self.omit_states(states[0], states[1], rows, batch.states_positions)
            counts["omit_states"] = rows.sum()
        if w["preserve_states"] and states is not None and states[2] is not None:
            every = torch.ones(len(states[2]), dtype=torch.bool, device=states[2].device)
            parts["preserve_states"] = self.omit_states(states[2], states[1], every)  # the same MSE, every row
            counts["preserve_states"] = every.sum()
        if w["unet_loss"] and unet is not None:
            parts["unet_loss"] = torch.nn.functional.mse_loss(unet[0], unet[1])
            counts["unet_loss"] = torch.tensor(len(unet[0]), device=unet[0].device)
        if w["seg_loss"] and seg is not None:
            parts["seg_loss"] = self.seg_loss(*seg)
            counts["seg_loss"] = torch.tensor(len(seg[0]), device=seg[0].device)
        total = sum(w[k] * global_mean_scale(v, counts[k]) for k, v in parts.items())
        return total, parts


def global_mean_scale(local_mean: torch.Tensor, local_count: torch.Tensor) -> torch.Tensor:
    """Rescale a mean over this process's rows so that, after DDP averages gradients, the result is the
    mean over all processes' rows, also when processes hold different numbers of rows for a term."""
    world = world_size()
    if world == 1:
        return local_mean
    total = gather(local_count.reshape(1).to(local_mean.device, torch.float32)).sum().clamp_min(1)
    return local_mean * local_count.to(torch.float32) * world / total
