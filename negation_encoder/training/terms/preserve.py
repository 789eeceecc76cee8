"""Keep affirmative captions' token hidden states at the frozen base's (a UNet cross-attends to them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossTerm, Plan, Request, SetupContext, StepOutputs, TermLoss
from .registry import register


class PreservationLoss(nn.Module):
    """Mean squared error between token hidden states and the base's, over real tokens: keeps the drop-in
    from drifting on ordinary prompts (the NegationCLIP paper lost TIFA on SDXL)."""

    def forward(self, hidden: torch.Tensor, base_hidden: torch.Tensor, attention_mask: torch.Tensor):
        mask = attention_mask.to(hidden.dtype)[..., None]
        return ((hidden - base_hidden) ** 2 * mask).sum() / (mask.sum() * hidden.shape[-1]).clamp_min(1)


@register
class Preserve(LossTerm):
    """The base's states of each distinct original caption are computed once, at its real positions only
    (the loss never reads a padded one), when they fit the frozen-output budget; else every step."""

    name = "preserve"
    summary = "keep affirmative captions' token hidden states at the base's (real tokens)"
    regularizer = True
    needs_base_tower = True

    def __init__(self, config, train):
        super().__init__(config, train)
        self.loss = PreservationLoss()
        self.kept: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def prepare(self, ctx: SetupContext) -> None:
        if ctx.cache is None:
            return
        texts = list(dict.fromkeys(ex.original for ex in ctx.examples))
        enc = ctx.tokenizer(texts, truncation=True, max_length=ctx.tokenizer.model_max_length)
        lengths = [len(ids) for ids in enc.input_ids]
        if not ctx.cache.reserve("base original states", sum(lengths) * ctx.base_text.config.hidden_size * 4):
            return
        self.kept = {}
        for start in range(0, len(texts), 256):  # a fixed order: a resumed run reads what the first one read
            chunk = texts[start: start + 256]
            batch = ctx.tokenizer(chunk, padding=True, truncation=True, max_length=ctx.tokenizer.model_max_length,
                                  return_tensors="pt").to(ctx.device)
            hidden = ctx.base_text(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            for t, h, n in zip(chunk, hidden.float().cpu(), lengths[start: start + 256], strict=True):
                self.kept[t] = h[:n].clone()

    def collate(self, examples, index, texts, foils):
        if self.kept is None:
            return {}
        states = [self.kept[ex.original] for ex in examples]
        width = max(len(s) for s in states)
        return {"base": torch.stack([F.pad(s, (0, 0, 0, width - len(s))) for s in states])}

    def plan(self, batch, info) -> Plan:
        if self.kept is not None:
            return Plan()
        rows = batch.original
        return Plan([Request("originals", "original", batch.input_ids[rows], batch.attention_mask[rows], base=True,
                             padding=False)])

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = batch.original
        hidden = out.texts.hidden[rows]
        if self.kept is not None:
            base = self.rows(batch)["base"]
            base_hidden = F.pad(base, (0, 0, 0, hidden.shape[1] - base.shape[1]))  # past a row's length: masked
        else:
            base_hidden = out.block("originals", "original", base=True).hidden
        return TermLoss(self.loss(hidden, base_hidden, batch.attention_mask[rows]), batch.attention_mask[rows].sum())
