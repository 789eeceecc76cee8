"""Negation losses: small modules of pure tensor functions, in the shape of open_clip's `loss.py`.

Every loss takes L2-normalised embeddings and the logit scale (already exponentiated) and returns a
scalar. None owns a model or a tokenizer. Rows are this process's examples; columns may be gathered
from all processes (see `training.distributed`), and labels come from image ids, so an image that
appears twice in a batch is a positive for both of its captions rather than a false negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The objective's terms, in one place: TrainConfig has a weight field of each name, the objective
# (`training.objective`) computes them, and the model card lists them.
TERMS = ("infonce", "mcq", "omni_presence", "omni_absence", "distractor", "split_distill", "preserve",
         "preserve_embeds", "preserve_states", "omit_states", "seg_loss", "unet_loss")


def multi_positive_ce(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -log(sum_pos softmax(logits)). `positive`/`valid` are boolean like `logits`."""
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    log_all = torch.logsumexp(logits, dim=-1)
    log_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=-1)
    return (log_all - log_pos).mean()


class ClipInfoNCE(nn.Module):
    """Symmetric InfoNCE (CLIP; NegationCLIP trains it on negated captions with vision frozen).

    image_ids / text_ids name the image behind each row / column; equal ids are positives. Text ids
    of -1 mark captions kept out of the pool (no row, no column): a bare "no fork here" cannot pick
    its image out of a batch and only drags the text tower towards a collapse.
    """

    def get_logits(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor):
        """(image-to-text, text-to-image) logits of local rows against (gathered) columns."""
        return logit_scale * image @ text.T

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        *,
        image_ids: torch.Tensor,
        text_ids: torch.Tensor,
        all_image: torch.Tensor | None = None,
        all_text: torch.Tensor | None = None,
        all_image_ids: torch.Tensor | None = None,
        all_text_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
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
        return (_nan_to_zero(loss_i) + _nan_to_zero(loss_t)) / 2


def _nan_to_zero(x: torch.Tensor) -> torch.Tensor:
    """The mean over zero rows is NaN; such a term contributes nothing."""
    return torch.nan_to_num(x, nan=0.0)


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


class MultipleChoiceLoss(nn.Module):
    """Per image, cross-entropy over its true caption and its minimal foils (NegBench's MCQ loss form).

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


class DistractorLoss(nn.Module):
    """Text-to-image negatives for a negated caption: its own image against counterfactual images that
    differ from it only by containing the negated concept (TripletCLIP-style hard negative images).

    A negation-blind encoder reads "a kitchen with no fork" as "a kitchen with a fork" and prefers the
    counterfactual; only reading the cue separates them. `distractors` is (B, K, D) with
    `distractor_mask` (B, K); rows without a distractor contribute nothing.
    """

    def forward(self, text: torch.Tensor, image: torch.Tensor, distractors: torch.Tensor, distractor_mask: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        has = distractor_mask.any(dim=1)
        if not has.any():
            return text.new_zeros(())
        own = (text * image).sum(-1, keepdim=True)
        other = torch.einsum("bd,bkd->bk", text, distractors).masked_fill(~distractor_mask, float("-inf"))
        logits = logit_scale * torch.cat([own, other], dim=1)[has]
        return F.cross_entropy(logits, torch.zeros(int(has.sum()), dtype=torch.long, device=logits.device))


class SplitDistillLoss(nn.Module):
    """Pull the embedding of a negated caption towards the frozen base's *split reading* of it:
    normalize(e(affirmative part) - w * e("a photo of a {negated concept}")) (`negation_encoder.split_scorer`).

    The training-free split reader already ranks images correctly for many negations but needs a
    splitter at inference; distilling it puts the same direction into the encoder itself, so a pipeline
    that reads the encoder (a UNet, CLIPSeg) gets it. `mask` (B,) marks rows that have a target.
    Loss: mean of 1 - cosine over those rows.
    """

    def forward(self, text: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not mask.any():
            return text.new_zeros(())
        return (1.0 - (text[mask] * target[mask]).sum(-1)).mean()


class EmbeddingPreservationLoss(SplitDistillLoss):
    """Keep the projected embedding of each affirmative (original) caption at the frozen base's.

    CLIPSeg conditions its decoder on this embedding (FiLM), so drift here costs a swapped-in encoder
    even on affirmative prompts; `PreservationLoss` guards the token states a UNet reads. Same form as
    the split-distillation term: mean of 1 - cosine to a fixed target over the masked rows.
    """


class OmniPresenceLoss(nn.Module):
    """Omni-NegCLIP's presence-based objective: pull each image to its original caption and push it
    away from the caption that negates an object it contains (plus the batch's other captions).

    `negated` (B, D) holds each image's presence-negated caption, `has_negated` (B,) which rows have one.
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, image, original, negated, *, has_negated, image_ids, all_original=None, all_original_ids=None):
        all_original = original if all_original is None else all_original
        all_original_ids = image_ids if all_original_ids is None else all_original_ids
        if not has_negated.any():
            return image.new_zeros(())
        image, negated, ids = image[has_negated], negated[has_negated], image_ids[has_negated]
        logits = torch.cat([image @ all_original.T, (image * negated).sum(-1, keepdim=True)], 1) / self.temperature
        pos = torch.cat([ids[:, None] == all_original_ids[None, :],
                         torch.zeros(len(ids), 1, dtype=torch.bool, device=image.device)], 1)
        return multi_positive_ce(logits, pos)


class OmniAbsenceLoss(nn.Module):
    """Omni-NegCLIP's absence-based objective: an image should match both its original caption and
    the caption negating an absent object, while the two captions stay apart in text space
    (hinge on their cosine above `margin`), so "a dog" and "a dog, no cat" do not collapse.
    """

    def __init__(self, temperature: float = 0.07, margin: float = 0.8, separation_weight: float = 1.0):
        super().__init__()
        self.temperature, self.margin, self.separation_weight = temperature, margin, separation_weight

    def forward(self, image, original, negated, *, has_negated, image_ids,
                all_original=None, all_negated=None, all_ids=None, all_has_negated=None):
        all_original = original if all_original is None else all_original
        all_negated = negated if all_negated is None else all_negated
        all_ids = image_ids if all_ids is None else all_ids
        all_has_negated = has_negated if all_has_negated is None else all_has_negated
        if not has_negated.any():
            return image.new_zeros(())
        img, ids = image[has_negated], image_ids[has_negated]
        pos = ids[:, None] == all_ids[None, :]
        align_o = multi_positive_ce(img @ all_original.T / self.temperature, pos)
        valid = all_has_negated[None, :].expand(len(ids), -1)
        align_n = multi_positive_ce(img @ all_negated.T / self.temperature, pos & valid, valid)
        cos = (original[has_negated] * negated[has_negated]).sum(-1)
        separation = F.relu(cos - self.margin).mean()
        return (align_o + align_n) / 2 + self.separation_weight * separation


class PreservationLoss(nn.Module):
    """Keep token-level hidden states of affirmative captions close to the frozen base encoder's.

    A diffusion UNet cross-attends to these states, so this term keeps the drop-in from drifting on
    ordinary prompts (the NegationCLIP paper lost TIFA on SDXL). Mean squared error over real tokens.
    """

    def forward(self, hidden: torch.Tensor, base_hidden: torch.Tensor, attention_mask: torch.Tensor):
        mask = attention_mask.to(hidden.dtype)[..., None]
        sq = ((hidden - base_hidden) ** 2 * mask).sum() / (mask.sum() * hidden.shape[-1]).clamp_min(1)
        return sq


class StateDistillationLoss(nn.Module):
    """Token states of negated captions toward the frozen base's states of their affirmative part, at every
    padded position a text-conditioned UNet reads ("omit" distillation).

    Why: a generator trained with the base encoder draws what its token states describe, and reads "a
    kitchen with a cup and no fork" as a kitchen with a cup AND a fork (it learned from web alt-text that
    "no fork" sits beside forks). A swapped encoder whose states for that prompt equal the base's states
    for "a kitchen with a cup" makes the frozen generator omit the fork, exactly as if it had been left out
    of the prompt. `pred` and `target` are (R, L, D), `rows` (R,) marks the rows that have a target;
    the loss is the mean squared error over those rows, every position and every dimension.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor, rows: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """`positions` (R, L) bool, optional: only these positions count (omit_states with
        `states_skip_pooled` leaves each caption's pooled position out)."""
        if not rows.any():
            return pred.new_zeros(())
        sq = (pred[rows] - target[rows]) ** 2
        if positions is None:
            return sq.mean()
        keep = positions[rows].to(sq.dtype)[..., None]
        return (sq * keep).sum() / (keep.sum() * sq.shape[-1]).clamp_min(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per sample, averaged: scale-free, so a small object counts as much as a large one."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


class SegmentationLoss(nn.Module):
    """A frozen CLIPSeg decoder's logits, conditioned on the trained text tower's projected embedding,
    against the referred object's mask: binary cross-entropy plus `dice` x soft Dice (objects cover a small
    share of the pixels; BCE alone leaves predictions timid). The decoder was trained with the base
    encoder; this term teaches the encoder to say "the cup that is not red" in the decoder's language.

    `choice` x softplus(mean logit on the other object - mean logit on the referred one), on samples that
    name the other object (`other_mask`: the red cup "the cup that is not red" excludes): which object the
    decoder picks. BCE and Dice barely tell "both cups" from "the right cup" (both objects are a few percent
    of the pixels), and an encoder trained by them alone learns to drop the colour, not to exclude it:
    object choice stays at chance (docs/testbed.md, "Which object CLIPSeg picks").

    `affirm` x `affirm_loss`, on samples whose record gives an `affirmative` expression of the same referent:
    the embedding the decoder reads pulled toward one it already segments right."""

    def __init__(self, dice: float = 1.0, choice: float = 0.0, affirm: float = 0.0):
        super().__init__()
        self.dice = dice
        self.choice = choice
        self.affirm = affirm

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, others: torch.Tensor | None = None,
                affirm: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`affirm`: (the tower's projected embeddings of the samples' texts, the base's projected embeddings of
        their records' affirmative expressions, which rows have one) for the affirmative-target part."""
        masks = masks.to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, masks) + self.dice * dice_loss(logits, masks)
        if self.choice and others is not None:
            loss = loss + self.choice * choice_loss(logits, masks, others.to(logits.dtype))
        if self.affirm and affirm is not None:
            loss = loss + self.affirm * affirm_loss(*affirm)
        return loss


def choice_loss(logits: torch.Tensor, masks: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """softplus(mean logit over `others` - mean logit over `masks`), averaged over the samples whose other
    mask is not empty (a record without `other_mask` has an all-zero one and adds nothing); 0 if none has one."""
    has = others.flatten(1).sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0
    return F.softplus(masked_mean(logits, others) - masked_mean(logits, masks))[has].mean()


def affirm_loss(embeds: torch.Tensor, targets: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Mean over the rows in `has` of ||embed - target||^2 / ||target||^2: the unnormalised projected
    embedding (what CLIPSeg's FiLM reads, norm included) of "the cup that isn't red" toward the base's
    embedding of "a blue cup", the same referent said without a negation, which the frozen decoder already
    segments. A direct target, where BCE and Dice through the decoder barely tell the two cups apart
    (`choice_loss`). 0 if no row has one."""
    if not has.any():
        return embeds.sum() * 0.0
    e, t = embeds[has].float(), targets[has].float()
    return ((e - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-12)).mean()


def masked_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean of `values` (N, H, W) over its mask (0 for an empty mask)."""
    return (values * masks).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp_min(1)
