"""The trainable side of a CLIPModel: text transformer, text projection and logit scale, in one module.

Wrapping them in one module lets accelerate/DDP see every trainable parameter in one forward: each step
encodes all of its views (the batch's texts first, then every view a term requested) in a single call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .terms import Encoded


class TextTower(nn.Module):
    def __init__(self, text_model: nn.Module, text_projection: nn.Module, logit_scale: nn.Parameter,
                 learn_logit_scale: bool):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.logit_scale = nn.Parameter(logit_scale.detach().clone(), requires_grad=learn_logit_scale)

    def forward(self, views: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> list[Encoded]:
        """Each view's (input_ids, attention_mask or None) read by the tower: its last hidden states, its
        projected pooled output and that output L2-normalised."""
        out = []
        for input_ids, attention_mask in views:
            o = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
            projected = self.text_projection(o.pooler_output)
            out.append(Encoded(o.last_hidden_state, projected, F.normalize(projected, dim=-1)))
        return out
