"""Every example's affirmative text (its caption, or the splitter's affirmative part of it) keeps the frozen
base's token states at all `pipeline.length` positions, padding included: a UNet reads the padding too, and
`preserve` covers real tokens only."""

from __future__ import annotations

import torch

from ..losses import state_mse
from .base import CheckContext, LossTerm, Plan, SetupContext, StepOutputs, TermLoss
from .padded import VIEW, PaddedRows
from .registry import register


@register
class PreserveStates(LossTerm):
    name = "preserve_states"
    summary = "keep affirmative texts' token states at the base's at every padded position a UNet reads"
    regularizer = True
    needs_base_tower = True

    def __init__(self, config, train):
        super().__init__(config, train)
        self.affirmative = PaddedRows("affirmative")

    def check(self, ctx: CheckContext) -> dict:
        PaddedRows.check(self.name, ctx)
        return {}

    def prepare(self, ctx: SetupContext) -> None:
        self.affirmative.prepare(ctx, base=True)

    def collate(self, examples, index, texts, foils):
        return self.affirmative.collate(index)

    def plan(self, batch, info) -> Plan:
        rows = self.rows(batch)
        return Plan([self.affirmative.request(rows), *self.affirmative.base_requests(rows)])

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        kept = out.block(VIEW, "affirmative").hidden
        every = torch.ones(len(kept), dtype=torch.bool, device=kept.device)
        target = self.affirmative.base_states(out, self.rows(batch))
        return TermLoss(state_mse(kept, target, every), every.sum())
