"""Fine-tuning engine: the grouped config, the loss terms (one module each, registered by name), batching,
the objective, layer selection, the accelerate trainer, export."""

from .checkpoints import RunDir
from .config import TrainConfig, config_help, resume_conflicts
from .freezing import configure_trainable, text_layer_indices
from .objective import NegationObjective
from .terms import REGISTRY, LossTerm, TermConfig, register
from .trainer import TrainResult, latest_checkpoint, train

__all__ = [
    "REGISTRY", "LossTerm", "NegationObjective", "RunDir", "TermConfig", "TrainConfig", "TrainResult", "config_help",
    "configure_trainable", "latest_checkpoint", "register", "resume_conflicts", "text_layer_indices", "train",
]
