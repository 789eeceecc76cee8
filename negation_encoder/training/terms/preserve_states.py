"""Every example's affirmative text (its caption, or the splitter's affirmative part of it) keeps the frozen
base's token states at all `pipeline.length` positions, padding included: a UNet reads the padding too, and
`preserve` covers real tokens only.

`twins`: a negated caption's affirmative twin (its first extra positive: the same sentence frame affirming
an object, "no bike in the scene" -> "a sign in the scene") keeps them too. Why: the affirmative parts the
splitter leaves are frame-less ("a sign"), so the frame words that only negated captions use ("in the scene",
"this scene contains") are trained by the omission and the contrastive terms alone, and drift where a prompt
uses them to affirm. Measured on the world's SD-style generator (docs/testbed.md), it did not change the control
subject rate beyond noise; it is off in every recipe."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...configs import option
from ..losses import state_mse
from .base import (
    CheckContext,
    LossTerm,
    Plan,
    SetupContext,
    StepOutputs,
    TermConfig,
    TermLoss,
    affirmative_twin,
)
from .padded import VIEW, PaddedRows
from .registry import register


@dataclass
class PreserveStatesConfig(TermConfig):
    twins: bool = option(False, "also keep the base's states of each negated caption's affirmative twin (its first "
                         "extra positive: the same frame affirming an object), so frame words that negated captions "
                         "use keep the base's reading when a prompt affirms with them")


@register
class PreserveStates(LossTerm):
    name = "preserve_states"
    config_class = PreserveStatesConfig
    summary = "keep affirmative texts' token states at the base's at every padded position a UNet reads"
    regularizer = True
    needs_base_tower = True

    def __init__(self, config: PreserveStatesConfig, train):
        super().__init__(config, train)
        self.affirmative = PaddedRows("affirmative")
        self.twin = PaddedRows("twin") if config.twins else None

    def check(self, ctx: CheckContext) -> dict:
        PaddedRows.check(self.name, ctx)
        return {}

    def prepare(self, ctx: SetupContext) -> None:
        self.affirmative.prepare(ctx, base=True)
        if self.twin is not None:
            self.twin.prepare(ctx, base=True)

    def collate(self, examples, index, texts, foils):
        rows = self.affirmative.collate(index)
        if self.twin is not None:
            has = torch.tensor([affirmative_twin(ex) is not None for ex in examples], dtype=torch.bool)
            rows.update(self.twin.collate(index[has]))
        return rows

    def _twins(self, rows) -> bool:
        return self.twin is not None and len(rows["twin_ids"]) > 0

    def plan(self, batch, info) -> Plan:
        rows = self.rows(batch)
        requests = [self.affirmative.request(rows), *self.affirmative.base_requests(rows)]
        if self._twins(rows):
            requests += [self.twin.request(rows), *self.twin.base_requests(rows)]
        return Plan(requests)

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        kept = out.block(VIEW, "affirmative").hidden
        target = self.affirmative.base_states(out, rows)
        if self._twins(rows):  # one mean over every kept row, affirmative parts and twins alike
            kept = torch.cat([kept, out.block(VIEW, "twin").hidden])
            target = torch.cat([target, self.twin.base_states(out, rows)])
        every = torch.ones(len(kept), dtype=torch.bool, device=kept.device)
        return TermLoss(state_mse(kept, target, every), every.sum())
