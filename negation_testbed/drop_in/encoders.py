"""The encoders a drop-in comparison swaps in: their labels (each folder checked first) and how far each
moved from the base on the compared texts."""

from __future__ import annotations

from pathlib import Path

from negation_encoder.checkpoint.layout import check_encoder_folder

from ..instruments.base_clip import BASE_DIR


def encoder_labels(encoders: list[str]) -> dict[str, str]:
    """label -> folder; each folder must hold the docs/design.md checkpoint layout (checked before any compute)."""
    return {f"e{i}": str(check_encoder_folder(path)) for i, path in enumerate(encoders, start=1)}


def encoder_drift(encoder: str, texts: list[str], base: str | Path = BASE_DIR) -> dict[str, float]:
    """How far an encoder moved from the base on these texts, in the two spaces downstream models read:
    the projected, normalised text embedding (CLIPSeg's FiLM conditioning) and the 77 padded token
    hidden states (a diffusion UNet's cross-attention). Mean cosine similarity; 1.0 = unchanged."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPModel

    from ..instruments.base_clip import world_tokenizer

    tok = world_tokenizer()
    models = [CLIPModel.from_pretrained(base).eval(), CLIPModel.from_pretrained(encoder).eval()]
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        outs = [m.text_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask) for m in models]
        proj = [F.normalize(m.text_projection(o.pooler_output), dim=-1) for m, o in zip(models, outs, strict=True)]
        tokens = F.cosine_similarity(outs[0].last_hidden_state, outs[1].last_hidden_state, dim=-1)
    return {"projected_cos": float((proj[0] * proj[1]).sum(-1).mean()), "token_cos": float(tokens.mean())}


def drift_table(drift: dict) -> str:
    lines = ["| encoder | set | projected-embedding cos to base | token hidden-state cos to base |", "|---|---|---:|---:|"]
    for label, sets in drift.items():
        lines += [f"| {label} | {name} | {d['projected_cos']:.3f} | {d['token_cos']:.3f} |" for name, d in sets.items()]
    return "\n".join(lines) + "\n"
