"""The weighted objective of a fine-tuning run: the enabled loss terms (`terms.REGISTRY` order) on one batch.

Rows are this process's examples; columns of the contrastive terms are gathered from every process
(`gather.gather`, with gradients), and each term's local mean is rescaled so that, after DDP averages
gradients, the result is the mean over all processes' rows. Like open_clip's losses it owns no trained
model: it takes the encodings of a step and reads every target from the batch or from its terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .batching import Batch
from .gather import gather, world_size
from .terms import LossTerm, Plan, StepInfo, StepOutputs


class NegationObjective(nn.Module):
    """sum over the enabled terms of weight * term."""

    def __init__(self, terms: Sequence[LossTerm]):
        super().__init__()
        self.terms = nn.ModuleDict({t.name: t for t in terms})

    def plan(self, batch: Batch, info: StepInfo) -> dict[str, Plan]:
        """What each term needs encoded (and loaded) for this micro-batch."""
        return {name: term.plan(batch, info) for name, term in self.terms.items()}

    def forward(self, out: StepOutputs, batch: Batch, plans: dict[str, Plan]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the weighted total, each term's value on this process's rows)."""
        losses = {name: term(out, batch, plans[name]) for name, term in self.terms.items()}
        total = sum(self.terms[name].weight * global_mean_scale(loss.value, torch.as_tensor(loss.count,
                                                                                           device=loss.value.device))
                    for name, loss in losses.items())
        return total, {name: loss.value for name, loss in losses.items()}

    def describe(self) -> dict[str, dict]:
        """The enabled terms and their settings, as the model card lists them."""
        return {name: term.describe() for name, term in self.terms.items()}


def global_mean_scale(local_mean: torch.Tensor, local_count: torch.Tensor) -> torch.Tensor:
    """Rescale a mean over this process's rows so that, after DDP averages gradients, the result is the
    mean over all processes' rows, also when processes hold different numbers of rows for a term."""
    world = world_size()
    if world == 1:
        return local_mean
    total = gather(local_count.reshape(1).to(local_mean.device, torch.float32)).sum().clamp_min(1)
    return local_mean * local_count.to(torch.float32) * world / total
