"""The testbed world's text-to-image pipeline: diffusers' pixel-space `IFPipeline` around a CLIP encoder.

Why IFPipeline: it is diffusers' text-conditioned pipeline that denoises pixels directly (no VAE), so a
32x32x3 `UNet2DConditionModel` trained on world images is a complete generator, and the folder loads
with plain `DiffusionPipeline.from_pretrained` (no custom code, no `trust_remote_code`). Its call
signature is the one `eval_t2i.generation.generate` uses (prompt, negative_prompt, a generator per
image, steps, guidance). Its T5 slots take any `transformers` encoder: IF reads `text_encoder(ids,
attention_mask)[0]`, which a `CLIPTextModel` returns as its last hidden state, padded to 77 tokens as
SD does, so `integrations.swap_text_encoders` and `eval_t2i`'s arms work on it unchanged. The
scheduler must be a DDPM-style one with `variance_type` in its config (IF reads it at each step).

This module assembles and saves the pipeline; it trains nothing (the UNet is trained by
`negation_encoder.testbed.world_t2i`, which imports only diffusers *models* and schedulers).
"""

from __future__ import annotations

from pathlib import Path


def world_pipeline(unet, scheduler, text_encoder, tokenizer):
    """An `IFPipeline` with no safety checker or watermarker (they would alter what the UNet drew)."""
    from diffusers import IFPipeline

    pipe = IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                      safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_world_pipeline(out: str | Path, unet, scheduler, text_encoder, tokenizer) -> Path:
    """Write the pipeline folder (`model_index.json`, `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/`)."""
    out = Path(out)
    world_pipeline(unet, scheduler, text_encoder, tokenizer).save_pretrained(out, safe_serialization=True)
    return out
