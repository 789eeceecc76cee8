"""Fine-tuning engine: config, losses and the objective, layer selection, the accelerate trainer, export."""

from .config import TrainConfig, config_help, resume_conflicts
from .freezing import configure_trainable, text_layer_indices
from .losses import (
    TERMS,
    ClipInfoNCE,
    DistractorLoss,
    EmbeddingPreservationLoss,
    HardNegativeInfoNCE,
    MultipleChoiceLoss,
    OmniAbsenceLoss,
    OmniPresenceLoss,
    PreservationLoss,
    SplitDistillLoss,
)
from .objective import NegationObjective
from .run_dir import RunDir
from .trainer import TrainResult, latest_checkpoint, train

__all__ = [
    "TERMS", "ClipInfoNCE", "DistractorLoss", "EmbeddingPreservationLoss", "HardNegativeInfoNCE", "MultipleChoiceLoss", "NegationObjective", "OmniAbsenceLoss",
    "OmniPresenceLoss", "PreservationLoss", "RunDir", "SplitDistillLoss", "TrainConfig", "TrainResult", "config_help",
    "configure_trainable", "latest_checkpoint", "resume_conflicts", "text_layer_indices",
    "train",
]
