"""Drop a negation-aware text encoder into diffusers pipelines and transformers CLIPSeg, and the training-free
route for both (`negation_kwargs` for pipelines, `segment(..., route="split")` for CLIPSeg)."""

from .clipseg import (
    SplitRoute,
    clipseg_probabilities,
    load_clipseg_text_encoder,
    segment,
    swap_clipseg_text_encoder,
)
from .diffusion import (
    check_compatibility,
    encode_prompt_clip_skip,
    generate,
    load_negation_text_encoder,
    negation_pipeline,
    pipeline_family,
    pipeline_reading,
    swap_text_encoders,
)
from .routes import NegativePromptIgnored, negation_kwargs

__all__ = [
    "NegativePromptIgnored",
    "SplitRoute",
    "clipseg_probabilities",
    "negation_kwargs",
    "pipeline_family",
    "pipeline_reading",
    "segment",
    "check_compatibility",
    "encode_prompt_clip_skip",
    "generate",
    "load_clipseg_text_encoder",
    "load_negation_text_encoder",
    "negation_pipeline",
    "swap_clipseg_text_encoder",
    "swap_text_encoders",
]
