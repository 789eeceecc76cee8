"""Put a negation-aware text tower into transformers' CLIPSeg (vision and decoder untouched).

The released CLIPSeg (CIDAS/clipseg-rd64-refined) is built on a ViT-B/16 CLIP: text width 512,
projection 512. `encoder` may be a `CLIPModel` or a `CLIPTextModelWithProjection` of that size.
"""

from __future__ import annotations

import torch


def _text_parts(encoder):
    if hasattr(encoder, "text_model") and hasattr(encoder, "text_projection"):
        return encoder.text_model, encoder.text_projection
    raise TypeError(f"encoder is of type {type(encoder).__name__}, but should be CLIPModel or "
                    "CLIPTextModelWithProjection (a text tower with its projection)")


def swap_clipseg_text_encoder(model, encoder):
    """Copy the text transformer and text projection of `encoder` into `model` (in place; returned).

    Every shape is checked first; a mismatch raises one ValueError listing each differing tensor.
    """
    text_model, projection = _text_parts(encoder)
    src = {f"text_model.{k}": v for k, v in text_model.state_dict().items()}
    src.update({f"text_projection.{k}": v for k, v in projection.state_dict().items()})
    dst_model = model.clip
    dst = {k: v for k, v in dst_model.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    mismatched = [f"{k}: CLIPSeg {tuple(dst[k].shape)} vs encoder {tuple(src[k].shape)}"
                  for k in sorted(set(dst) & set(src)) if dst[k].shape != src[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"MISSING {k}" for k in missing[:5]] + [f"UNEXPECTED {k}" for k in unexpected[:5]] + \
                [f"MISMATCH {m}" for m in mismatched[:5]]
        raise ValueError(
            f"cannot load a text tower (width {text_model.config.hidden_size}, projection "
            f"{projection.out_features}) into CLIPSeg (width {model.config.text_config.hidden_size}, projection "
            f"{model.config.projection_dim}): " + "; ".join(lines))
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(v.to(dtype=dst[k].dtype, device=dst[k].device))
    return model
