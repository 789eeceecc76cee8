"""Token states of negated captions toward the frozen base's states of their affirmative part, at every
padded position a text-conditioned UNet reads ("omit" distillation).

Why: a generator trained with the base encoder draws what its token states describe, and reads "a kitchen
with a cup and no fork" as a kitchen with a cup AND a fork (it learned from web alt-text that "no fork"
sits beside forks). A swapped encoder whose states for that prompt equal the base's states for "a kitchen
with a cup" makes the frozen generator omit the fork, exactly as if it had been left out of the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...configs import option
from ...data.records import NEGATION_TYPES
from ..losses import state_mse
from .base import CheckContext, LossTerm, Plan, Request, SetupContext, StepOutputs, TermConfig, TermLoss
from .padded import VIEW, PaddedRows
from .registry import register


@dataclass
class OmitConfig(TermConfig):
    """The omit terms' shared option: which negations they train on."""

    types: list[str] = option([], "negation types (record negation_type) it trains on; empty: every record the "
                              "splitter finds a negation in. [absence] leaves attribute negations ('the cup is not "
                              "red') to the contrastive terms")

    skip_bare: bool = option(False, "leave out bare negations ('a scene with no tree'), whose affirmative part is the "
                             "splitter's stand-in 'a photo', not the caption's own frame")

    def problems(self) -> list[str]:
        p = super().problems()
        bad = [t for t in self.types if t not in NEGATION_TYPES]
        if bad:
            p.append(f"types must name negation types ({'|'.join(NEGATION_TYPES)}), got {bad}")
        return p

    def eligible(self, example) -> bool:
        return example.has_negation and (not self.types or example.negation_type in self.types) and \
            not (self.skip_bare and example.bare)


@dataclass
class OmitStatesConfig(OmitConfig):
    skip_pooled: bool = option(False, "leave out each negated caption's pooled (end-of-text) position: the projected "
                               "embedding CLIP and CLIPSeg read stays the contrastive terms'")


def no_negation_reason(term: LossTerm, n: int) -> str:
    return term.without(f"the negation splitter finds no negation in any of the {n} true captions (of the types "
                        "named)")


@register
class OmitStates(LossTerm):
    name = "omit_states"
    config_class = OmitStatesConfig
    summary = ("a negated caption's padded token states toward the frozen base's states of its affirmative part: "
               "a frozen UNet then leaves the negated concept out")
    records = "true captions the splitter finds a negation in (of `types`, when given)"
    needs_base_tower = True

    def __init__(self, config: OmitStatesConfig, train):
        super().__init__(config, train)
        self.positive, self.affirmative = PaddedRows("positive"), PaddedRows("affirmative")
        self.positions: torch.Tensor | None = None

    def eligible(self, example) -> bool:
        return self.config.eligible(example)

    def no_eligible_reason(self, n: int) -> str:
        return no_negation_reason(self, n)

    def check(self, ctx: CheckContext) -> dict:
        PaddedRows.check(self.name, ctx)
        return {}

    def prepare(self, ctx: SetupContext) -> None:
        self.positive.prepare(ctx)
        self.affirmative.prepare(ctx, base=True)
        if self.config.skip_pooled:  # the pooled position is the end-of-text token, the last one the mask covers
            mask = self.positive.mask
            self.positions = torch.ones_like(mask, dtype=torch.bool)
            self.positions[torch.arange(len(mask)), mask.sum(-1) - 1] = False

    def collate(self, examples, index, texts, foils):
        rows = {**self.positive.collate(index), **self.affirmative.collate(index),
                "rows": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}
        if self.positions is not None:
            rows["positions"] = self.positions[index]
        return rows

    def plan(self, batch, info) -> Plan:
        """Only the rows this term trains go through the tower (a row it does not train would be encoded
        at the pipeline's full padding for nothing); the base's affirmative rows are shared with the
        other terms that read them."""
        rows = self.rows(batch)
        mine = rows["rows"]
        base = self.affirmative.base_requests(rows)
        if not mine.any():
            return Plan(base)
        own = Request(VIEW, f"positive:{self.name}", rows["positive_ids"][mine],
                      rows["positive_mask"][mine] if self.positive.read_mask else None,
                      layer=self.positive.layer, final_norm=self.positive.final_norm)
        return Plan([own, *base])

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        mine = rows["rows"]
        if not mine.any():  # no negated caption of the types it trains in this batch
            return TermLoss(out.texts.embeds.sum() * 0.0, 0)
        pred = out.block(VIEW, f"positive:{self.name}").hidden
        target = self.affirmative.base_states(out, rows)[mine]
        every = torch.ones(len(pred), dtype=torch.bool, device=pred.device)
        positions = rows["positions"][mine] if "positions" in rows else None
        return TermLoss(state_mse(pred, target, every, positions), mine.sum())
