"""Drop a negation-aware text encoder into diffusers pipelines and transformers CLIPSeg."""

from .clipseg import swap_clipseg_text_encoder
from .diffusion import (
    check_compatibility,
    encode_prompt_clip_skip,
    generate,
    load_negation_text_encoder,
    negation_pipeline,
    swap_text_encoders,
)

__all__ = [
    "check_compatibility",
    "encode_prompt_clip_skip",
    "generate",
    "load_negation_text_encoder",
    "negation_pipeline",
    "swap_clipseg_text_encoder",
    "swap_text_encoders",
]
