"""A negated caption's pooled output, as the pipeline reads it, toward the frozen base's pooled output of its
affirmative part: "omit" distillation for the pooled slot, as `omit_states` is for the token states.

Why: SDXL's UNet reads the second tower's projected pooled output (`text_embeds`) beside the token states,
SD3's transformer both towers' projected pooled outputs, and Flux reads CLIP's pooled output alone
(`negation_encoder.conditioning`). A generator trained with the base encoder only ever saw the base's pooled
outputs of affirmative text. `omit_states` moves the token states of "a kitchen with a cup and no fork" to the
base's states of "a kitchen with a cup"; the pooled output is left to the contrastive terms, which make it a
vector such a UNet never saw. This term moves it to the base's pooled output of the affirmative part, so every
input the pipeline reads says "a kitchen with a cup".

The pooled output is the end-of-text token's state, which CLIP's causal attention computes from the tokens
before it alone: the batch's own encoding (masked, padded to its longest text) gives the value the pipeline
computes at its padded length up to float rounding, so the term needs no extra pass through the tower
(tests/test_downstream_terms.py checks it against `conditioning.read_text` at the pipeline's length, which
tests/test_conditioning.py holds equal to each pipeline's `encode_prompt`).
"""

from __future__ import annotations

import torch

from ...conditioning import Reading, read_text
from ...errors import ConfigError
from .base import CheckContext, LossTerm, Plan, SetupContext, StepOutputs, TermConfig, TermLoss
from .omit_states import OmitConfig, no_negation_reason
from .registry import register


def pooled_of(out: StepOutputs, batch, rows: torch.Tensor, pooled: str) -> torch.Tensor:
    """(R, D) the trained tower's pooled output of the batch texts `rows`, as a pipeline reads it: "projected"
    (`text_projection(pooler_output)`) or "pooler" (`pooler_output`: the final-normed state of the end-of-text
    token, the last position the mask covers)."""
    if pooled == "projected":
        return out.texts.projected[rows]
    eos = batch.attention_mask[rows].sum(-1) - 1
    return out.texts.hidden[rows, eos]


@register
class OmitPooled(LossTerm):
    name = "omit_pooled"
    config_class = OmitConfig
    summary = ("a negated caption's pooled output as the pipeline reads it (SDXL's text_embeds, SD3's pooled, Flux's "
               "pooler_output) toward the frozen base's pooled output of its affirmative part")
    records = "true captions the splitter finds a negation in (of `types`, when given)"

    def __init__(self, config: OmitConfig, train):
        super().__init__(config, train)
        self.pooled: str = "projected"
        self.targets: torch.Tensor | None = None
        self.index: torch.Tensor | None = None

    def eligible(self, example) -> bool:
        return self.config.eligible(example)

    def no_eligible_reason(self, n: int) -> str:
        return no_negation_reason(self, n)

    def check(self, ctx: CheckContext) -> dict:
        pipe = ctx.train.pipeline
        if pipe.reading().pooled is None:
            raise ConfigError(f"{self.name} trains the pooled output a pipeline reads, and a {pipe.family} pipeline "
                              f"reads none from its {pipe.slot} (token states only); set its weight to 0 or "
                              "pipeline to one that reads a pooled output (sdxl text_encoder_2, sd3, flux, clipseg)")
        return {"pooled": pipe.reading().pooled}

    @torch.no_grad()
    def prepare(self, ctx: SetupContext) -> None:
        """The base's pooled output of each example's affirmative part (its own caption when it negates
        nothing: such rows are not trained), tokenized and read as the pipeline does, once per distinct text."""
        how = ctx.train.pipeline.reading()
        self.pooled = how.pooled
        texts = [ex.affirmative or ex.positive for ex in ctx.examples]
        distinct = list(dict.fromkeys(texts))
        position = {t: i for i, t in enumerate(distinct)}
        read = Reading(states_layer=None, attention_mask=how.attention_mask, length=how.length, pooled=how.pooled)
        parts = []
        for start in range(0, len(distinct), 256):
            enc = ctx.tokenizer(distinct[start: start + 256], padding="max_length", max_length=how.length,
                                truncation=True, return_tensors="pt").to(ctx.device)
            parts.append(read_text(ctx.model.text_model, ctx.model.text_projection, enc.input_ids,
                                   enc.attention_mask, read)[1].float().cpu())
        self.targets = torch.cat(parts)
        self.index = torch.tensor([position[t] for t in texts], dtype=torch.long)

    def collate(self, examples, index, texts, foils):
        return {"target": self.targets[self.index[index]],
                "rows": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        mine = rows["rows"]
        if not mine.any():  # no negated caption of the types it trains in this batch
            return TermLoss(out.texts.embeds.sum() * 0.0, 0)
        pred = pooled_of(out, batch, rows.get("text", batch.positive)[mine], self.pooled)
        return TermLoss(((pred - rows["target"][mine]) ** 2).mean(), mine.sum())


@register
class PreservePooled(OmitPooled):
    """Every example's affirmative text (the splitter's affirmative part, or the caption itself when it negates
    nothing) keeps the base's pooled output as the pipeline reads it: `preserve_states` for the pooled slot.
    Why: a pipeline that reads the pooled output reads it for every prompt, and the layers that make it (for
    SDXL, the last one, which its penultimate-state reading leaves to the contrastive terms) drift otherwise."""

    name = "preserve_pooled"
    config_class = TermConfig
    summary = ("every example's affirmative text keeps the base's pooled output as the pipeline reads it (SDXL's "
               "text_embeds, SD3's pooled, Flux's pooler_output)")
    records = "every record"
    regularizer = True

    def eligible(self, example) -> bool:
        return True

    def collate(self, examples, index, texts, foils):
        return {"target": self.targets[self.index[index]],
                "text": torch.tensor([texts.row(ex.affirmative or ex.positive) for ex in examples]),
                "rows": torch.ones(len(examples), dtype=torch.bool)}
