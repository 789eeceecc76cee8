"""Pull each negated caption's embedding towards the frozen base's *split reading* of it:
normalize(e(affirmative part) - w * e("a photo of a {negated concept}")) (`negation_encoder.split_scorer`).

The training-free split reader already ranks images correctly for many negations but needs a splitter at
inference; distilling it puts the same direction into the encoder itself, so a pipeline that reads the
encoder (a UNet, CLIPSeg) gets it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...configs import option
from ..losses import cosine_distance
from .base import LossTerm, Plan, SetupContext, StepOutputs, TermConfig, TermLoss
from .registry import register


@torch.no_grad()
def split_reading_targets(model, tokenizer, texts: list[str], weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, D) normalised targets, (N,) mask): for each caption that negates something,
    normalize(e(affirmative) - weight * mean_c e("a photo of a {c}")) under `model`, read through the split
    scorer's own `encode_split`. (The scorer takes the max over concepts per image; a single target direction
    needs one vector, hence the mean.)"""
    from ...encoding import encode_texts
    from ...split_scorer import encode_split

    was_training = model.training
    model.eval()
    split = encode_split(texts, lambda t: encode_texts(model, tokenizer, t))
    model.train(was_training)
    mask = split.concept_mask.float()
    concepts = (split.concepts * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    targets = F.normalize(split.affirmative - weight * concepts, dim=-1)
    return targets * split.has_negation[:, None], split.has_negation.clone()


@dataclass
class SplitDistillConfig(TermConfig):
    concept_weight: float = option(1.0, "the split reading's weight w on the negated concept")

    def problems(self) -> list[str]:
        p = super().problems()
        if not self.concept_weight >= 0:
            p.append(f"concept_weight must be >= 0, got {self.concept_weight!r}")
        return p


@register
class SplitDistill(LossTerm):
    name = "split_distill"
    config_class = SplitDistillConfig
    summary = "pull a negated caption toward the frozen base's split reading of it"
    records = "true captions the splitter finds a negation in"

    def __init__(self, config: SplitDistillConfig, train):
        super().__init__(config, train)
        self.targets: torch.Tensor | None = None

    def eligible(self, example) -> bool:
        return example.has_negation

    def no_eligible_reason(self, n: int) -> str:
        return self.without(f"the negation splitter finds no negation in any of the {n} true captions")

    def prepare(self, ctx: SetupContext) -> None:
        targets, has = split_reading_targets(ctx.model, ctx.tokenizer, [ex.positive for ex in ctx.examples],
                                             self.config.concept_weight)
        eligible = torch.tensor([self.name in ex.eligible for ex in ctx.examples], dtype=torch.bool)
        if not torch.equal(has.cpu(), eligible):  # one splitter reads both: a mismatch is a bug
            raise RuntimeError("split_distill: the split reading and the eligibility rule disagree")
        self.targets = targets.cpu()

    def collate(self, examples, index, texts, foils):
        return {"target": self.targets[index],
                "rows": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        rows = self.rows(batch)
        return TermLoss(cosine_distance(out.texts.embeds[batch.positive], rows["target"], rows["rows"]),
                        rows["rows"].sum())
