"""Keep affirmative captions' projected embeddings at the frozen base's: CLIPSeg conditions its decoder on
this embedding (FiLM), so drift here costs a swapped-in encoder even on affirmative prompts."""

from __future__ import annotations

import torch

from ..losses import cosine_distance
from .base import LossTerm, Plan, SetupContext, StepOutputs, TermLoss
from .registry import register


@register
class PreserveEmbeds(LossTerm):
    name = "preserve_embeds"
    summary = "keep affirmative captions' projected embeddings at the base's (what CLIPSeg reads)"
    regularizer = True

    def __init__(self, config, train):
        super().__init__(config, train)
        self.targets: torch.Tensor | None = None

    def prepare(self, ctx: SetupContext) -> None:
        from ...encoding import encode_texts

        self.targets = encode_texts(ctx.model, ctx.tokenizer, [ex.original for ex in ctx.examples]).cpu()

    def collate(self, examples, index, texts, foils):
        return {"target": self.targets[index]}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        target = self.rows(batch)["target"]
        every = torch.ones(len(target), dtype=torch.bool, device=target.device)
        return TermLoss(cosine_distance(out.texts.embeds[batch.original], target, every), every.sum())
