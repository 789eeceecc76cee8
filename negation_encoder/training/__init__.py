"""Fine-tuning engine: losses, layer selection, cached image embeddings, the accelerate trainer."""

from .config import TrainConfig
from .embed_cache import ImageEmbeddingCache, cache_fingerprint
from .export import export_checkpoint
from .freezing import configure_trainable, text_layer_indices
from .losses import (
    ClipInfoNCE,
    HardNegativeInfoNCE,
    MultipleChoiceLoss,
    OmniAbsenceLoss,
    OmniPresenceLoss,
    PreservationLoss,
)
from .trainer import TrainResult, latest_checkpoint, train

__all__ = [
    "ClipInfoNCE", "HardNegativeInfoNCE", "ImageEmbeddingCache", "MultipleChoiceLoss", "OmniAbsenceLoss",
    "OmniPresenceLoss", "PreservationLoss", "TrainConfig", "TrainResult", "cache_fingerprint",
    "configure_trainable", "export_checkpoint", "latest_checkpoint", "text_layer_indices", "train",
]
