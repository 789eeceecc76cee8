"""The objective's loss terms, one module each, registered by name (`registry.REGISTRY`).

The import order below is the registry's order, which is the order the objective computes and sums the
terms. A term from elsewhere registers itself with `register` when its module is imported.
"""

from . import infonce, mcq, omni, distractor, split_distill, preserve_embeds, preserve, omit_states  # noqa: I001,F401
from . import preserve_states, unet_loss, seg_loss, omit_pooled  # noqa: F401
from .base import (
    CheckContext,
    Encoded,
    LossTerm,
    Plan,
    Request,
    SetupContext,
    StepInfo,
    StepOutputs,
    TermConfig,
    TermLoss,
)
from .registry import REGISTRY, register, term_class

__all__ = ["REGISTRY", "CheckContext", "Encoded", "LossTerm", "Plan", "Request", "SetupContext", "StepInfo",
           "StepOutputs", "TermConfig", "TermLoss", "register", "term_class"]
