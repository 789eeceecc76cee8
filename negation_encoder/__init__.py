"""negation_encoder: build negation data, fine-tune CLIP text encoders, evaluate and publish them."""

__version__ = "0.1.0"
