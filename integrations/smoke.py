"""Show that a trained encoder folder drops into a diffusers pipeline and CLIPSeg (the demo's last step).

The testbed's encoder is tiny, so the pipeline and CLIPSeg around it are tiny too (built in code with
the encoder's widths); what is exercised is the real swap path: load by role, check, swap, run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def smoke_test(folder: str | Path, steps: int = 2) -> dict:
    """Run 2 denoising steps of SD 1.x with the folder's text encoder and one CLIPSeg forward."""
    from diffusers import StableDiffusionPipeline
    from transformers import (
        CLIPImageProcessor,
        CLIPModel,
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPTokenizer,
    )

    from negation_encoder.testing.tiny import build_scheduler, build_unet, build_vae

    from .clipseg import swap_clipseg_text_encoder
    from .diffusion import load_negation_text_encoder, swap_text_encoders

    folder = Path(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    te = load_negation_text_encoder(str(folder), "text_encoder")
    unet = build_unet(0, cross_attention_dim=te.config.hidden_size, attention_head_dim=2)
    pipe = StableDiffusionPipeline(unet=unet, vae=build_vae(0), text_encoder=load_negation_text_encoder(str(folder)),
                                   tokenizer=tokenizer, scheduler=build_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    swap_text_encoders(pipe, text_encoder=te)
    image = pipe("a kitchen with a red cup and no fork", num_inference_steps=steps, height=32, width=32,
                 output_type="np", generator=torch.Generator().manual_seed(0)).images

    clip = CLIPModel.from_pretrained(folder)
    tc, vc = clip.config.text_config.to_dict(), clip.config.vision_config.to_dict()
    config = CLIPSegConfig(text_config=tc, vision_config=vc, projection_dim=clip.config.projection_dim,
                           extract_layers=tuple(range(1, vc["num_hidden_layers"])), reduce_dim=16,
                           decoder_num_attention_heads=2, decoder_intermediate_size=32)
    seg = CLIPSegForImageSegmentation(config).eval()
    swap_clipseg_text_encoder(seg, clip)
    processor = CLIPImageProcessor.from_pretrained(folder)
    rng = np.random.default_rng(0)
    pixels = processor(images=[Image.fromarray(rng.integers(0, 255, (vc["image_size"],) * 2 + (3,), dtype=np.uint8))],
                       return_tensors="pt").pixel_values
    enc = tokenizer(["the cup that is not red"], return_tensors="pt")
    with torch.no_grad():
        logits = seg(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixels).logits
    return {"sd_image_shape": list(image.shape), "sd_finite": bool(np.isfinite(image).all()),
            "clipseg_logits_shape": list(logits.shape), "clipseg_finite": bool(torch.isfinite(logits).all())}
