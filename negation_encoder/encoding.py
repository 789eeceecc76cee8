"""Embedding helpers shared by the trainer, the image cache and the benchmarks (one place only).

All returned embeddings are L2-normalised: every score in this project is a cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Projected pooled text features of a `CLIPModel` (transformers 5 returns an output object)."""
    out = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    return getattr(out, "pooler_output", out)


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    out = model.get_image_features(pixel_values=pixel_values)
    return getattr(out, "pooler_output", out)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) normalised text embeddings, padded per batch to the longest caption (exact under CLIP's
    causal mask: tokens after the eos never influence the pooled eos state)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").to(device)
        out.append(F.normalize(text_features(model, enc.input_ids, enc.attention_mask).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.projection_dim)


@torch.no_grad()
def encode_images(model, image_processor, images: Sequence, batch_size: int = 256,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """(N, D) normalised image embeddings from PIL images (or arrays) through the model's processor."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        pix = image_processor(images=list(images[i: i + batch_size]), return_tensors="pt").pixel_values
        pix = pix.to(device=device, dtype=dtype or next(model.parameters()).dtype)
        out.append(F.normalize(image_features(model, pix).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.projection_dim)


def batched(fn: Callable, items: Sequence, batch_size: int):
    for i in range(0, len(items), batch_size):
        yield fn(items[i: i + batch_size])


def processor_output_size(image_processor) -> tuple[int, int] | None:
    """(height, width) every image leaves the processor with, or None when it passes sizes through
    (no resize and no centre crop: the image itself must then be the model's size)."""
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and crop:
        return int(crop.get("height", 0)), int(crop.get("width", 0))
    size = getattr(image_processor, "size", None) or {}
    if getattr(image_processor, "do_resize", False) and "height" in size:
        return int(size["height"]), int(size["width"])
    return None


def image_size_problem(image_processor, model_image_size: int, size: tuple[int, int]) -> str | None:
    """Why an image of PIL `size` (width, height) cannot go through this processor into a vision tower
    of `model_image_size`, or None. A processor that resizes (or crops) takes any size; one that passes
    sizes through needs exactly the model's, or the patch embedding crashes mid-run."""
    if processor_output_size(image_processor) is not None or getattr(image_processor, "do_resize", False):
        return None
    w, h = size
    if (h, w) != (model_image_size, model_image_size):
        return (f"is {w}x{h} but the model takes {model_image_size}x{model_image_size} and its image processor does "
                "not resize (do_resize false); resize the images, or set do_resize in preprocessor_config.json")
    return None
