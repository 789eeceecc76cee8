"""The trainable side of a CLIPModel: text transformer, text projection and logit scale, in one module.

Wrapping them in one module lets accelerate/DDP see every trainable parameter in one forward: each step
encodes all of its views (the batch's texts first, then every view a term requested) in a single call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import Reading, read_text
from .terms import Encoded


class TextTower(nn.Module):
    def __init__(self, text_model: nn.Module, text_projection: nn.Module, logit_scale: nn.Parameter,
                 learn_logit_scale: bool):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.logit_scale = nn.Parameter(logit_scale.detach().clone(), requires_grad=learn_logit_scale)

    def forward(self, views: Sequence[tuple[torch.Tensor, torch.Tensor | None, int, bool]]) -> list[Encoded]:
        """Each view's (input_ids, attention_mask or None, hidden-state layer, final norm) read by the tower,
        as a pipeline reads it (`conditioning.read_text`): those hidden states, the projected pooled output
        and that output L2-normalised."""
        out = []
        for input_ids, attention_mask, layer, final_norm in views:
            how = Reading(states_layer=layer, final_norm=final_norm, attention_mask=attention_mask is not None,
                          length=input_ids.shape[1], pooled="projected")
            states, projected, _ = read_text(self.text_model, self.text_projection, input_ids, attention_mask, how)
            out.append(Encoded(states, projected, F.normalize(projected, dim=-1)))
        return out
