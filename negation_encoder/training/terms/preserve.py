"""Keep affirmative captions' token hidden states at the frozen base's (a UNet cross-attends to them)."""

from __future__ import annotations

import torch
from torch import nn

from .base import LossTerm, Plan, Request, StepOutputs, TermLoss
from .registry import register


class PreservationLoss(nn.Module):
    """Mean squared error between token hidden states and the base's, over real tokens: keeps the drop-in
    from drifting on ordinary prompts (the NegationCLIP paper lost TIFA on SDXL)."""

    def forward(self, hidden: torch.Tensor, base_hidden: torch.Tensor, attention_mask: torch.Tensor):
        mask = attention_mask.to(hidden.dtype)[..., None]
        return ((hidden - base_hidden) ** 2 * mask).sum() / (mask.sum() * hidden.shape[-1]).clamp_min(1)


@register
class Preserve(LossTerm):
    name = "preserve"
    summary = "keep affirmative captions' token hidden states at the base's (real tokens)"
    regularizer = True
    needs_base_tower = True

    def __init__(self, config, train):
        super().__init__(config, train)
        self.loss = PreservationLoss()

    def plan(self, batch, info) -> Plan:
        rows = batch.original
        return Plan([Request("originals", "original", batch.input_ids[rows], batch.attention_mask[rows], base=True,
                             padding=False)])

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = batch.original
        base_hidden = out.block("originals", "original", base=True).hidden
        return TermLoss(self.loss(out.texts.hidden[rows], base_hidden, batch.attention_mask[rows]),
                        batch.attention_mask[rows].sum())
