"""Text-to-image negatives for a negated caption: its own image against counterfactual images that add the
negated concept (the records' `distractor_images`; TripletCLIP-style hard negative images)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...configs import option
from ...data.records import NEGATION_TYPES
from .base import LossTerm, Plan, SetupContext, StepOutputs, TermConfig, TermLoss
from .registry import register


class DistractorLoss(nn.Module):
    """A negation-blind encoder reads "a kitchen with no fork" as "a kitchen with a fork" and prefers the
    counterfactual; only reading the cue separates them. `distractors` is (B, K, D) with
    `distractor_mask` (B, K); rows without a distractor contribute nothing."""

    def forward(self, text: torch.Tensor, image: torch.Tensor, distractors: torch.Tensor, distractor_mask: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        has = distractor_mask.any(dim=1)
        if not has.any():
            return text.new_zeros(())
        own = (text * image).sum(-1, keepdim=True)
        other = torch.einsum("bd,bkd->bk", text, distractors).masked_fill(~distractor_mask, float("-inf"))
        logits = logit_scale * torch.cat([own, other], dim=1)[has]
        return F.cross_entropy(logits, torch.zeros(int(has.sum()), dtype=torch.long, device=logits.device))


@dataclass
class DistractorConfig(TermConfig):
    max_images: int = option(4, "counterfactual images per record")
    types: list[str] = option([], "negation types (record negation_type) it trains on; empty: every type. [absence] "
                              "leaves out P2's answer-flipped images ('the chair is not blue' against the chair blue)")
    sources: list[str] = option([], "record sources (record `source`) it trains on; empty: every source")

    def problems(self) -> list[str]:
        p = super().problems()
        if self.max_images <= 0:
            p.append(f"max_images must be > 0, got {self.max_images}")
        bad = [t for t in self.types if t not in NEGATION_TYPES]
        if bad:
            p.append(f"types must name negation types ({'|'.join(NEGATION_TYPES)}), got {bad}")
        if any(not isinstance(x, str) or not x.strip() for x in self.sources):
            p.append(f"sources must be non-empty source names, got {self.sources}")
        return p


@register
class Distractor(LossTerm):
    name = "distractor"
    config_class = DistractorConfig
    summary = ("text-to-image: a negated caption against its image and the counterfactual images that add the "
               "negated concept (or, for a P2 record, make its question true)")
    records = "non-presence records with distractor_images (of `types` and `sources`, when given)"

    def __init__(self, config: DistractorConfig, train):
        super().__init__(config, train)
        self.loss = DistractorLoss()
        self.images: torch.Tensor | None = None
        self.indices: list[tuple[int, ...]] = []

    def eligible(self, example) -> bool:
        c = self.config
        return (not example.presence and bool(example.distractor_keys)
                and (not c.types or example.negation_type in c.types)
                and (not c.sources or example.source in c.sources))

    def no_eligible_reason(self, n: int) -> str:
        return self.without(f"none of the {n} records other than presence ones lists distractor_images (of the "
                            "negation types and sources objective.distractor.types / sources name, when given)")

    def image_keys(self, example):
        return example.distractor_keys if self.name in example.eligible else ()

    def prepare(self, ctx: SetupContext) -> None:
        index = ctx.key_index
        self.images = ctx.images
        self.indices = [tuple(index[k] for k in ex.distractor_keys[: self.config.max_images])
                        if self.name in ex.eligible else () for ex in ctx.examples]

    def collate(self, examples, index, texts, foils):
        k = self.config.max_images
        kept = [self.indices[i] for i in index.tolist()]
        rows = torch.tensor([[*d, *[-1] * (k - len(d))] for d in kept], dtype=torch.long).reshape(len(kept), k)
        return {"images": rows, "emb": self.images[rows.clamp_min(0)]}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        mask = rows["images"] >= 0
        loss = self.loss(out.texts.embeds[batch.positive], batch.image_emb, rows["emb"], mask, out.logit_scale)
        return TermLoss(loss, mask.any(dim=1).sum())
