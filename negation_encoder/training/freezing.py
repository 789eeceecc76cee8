"""What trains: the vision tower never does; the text side is chosen layer by layer.

Omni-NegCLIP fine-tunes only the front transformer layers of the text encoder; NegationCLIP the
whole text tower. Frozen parameters get `requires_grad=False`, so they receive no gradients and the
optimizer (built from trainable parameters only) keeps no state for them.
"""

from __future__ import annotations

from torch import nn


def text_layer_indices(spec: str, num_layers: int) -> list[int]:
    """'all' | 'front:K' | 'back:K' | '0,2,5' -> sorted layer indices, validated against num_layers."""
    if spec == "all":
        return list(range(num_layers))
    if spec.startswith(("front:", "back:")):
        side, k = spec.split(":", 1)
        k = int(k)
        if not 0 <= k <= num_layers:
            raise ValueError(f"layers={spec!r}: K must be in [0, {num_layers}]")
        return list(range(k)) if side == "front" else list(range(num_layers - k, num_layers))
    idx = sorted({int(x) for x in spec.split(",") if x.strip()})
    bad = [i for i in idx if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layers={spec!r}: indices {bad} out of range for {num_layers} layers")
    return idx


def configure_trainable(
    text_model: nn.Module,
    text_projection: nn.Module | None,
    layers: str = "all",
    train_embeddings: bool = True,
    train_final_layer_norm: bool = True,
    train_projection: bool = True,
) -> list[str]:
    """Set `requires_grad` on a (flat, transformers 5) `CLIPTextModel` and its projection.

    Returns the names of trainable parameters (prefixed `text_model.` / `text_projection.`).
    """
    for p in text_model.parameters():
        p.requires_grad_(False)
    layer_list = text_model.encoder.layers
    for i in text_layer_indices(layers, len(layer_list)):
        for p in layer_list[i].parameters():
            p.requires_grad_(True)
    for p in text_model.embeddings.parameters():
        p.requires_grad_(train_embeddings)
    for p in text_model.final_layer_norm.parameters():
        p.requires_grad_(train_final_layer_norm)
    if text_projection is not None:
        for p in text_projection.parameters():
            p.requires_grad_(train_projection)
    names = [f"text_model.{n}" for n, p in text_model.named_parameters() if p.requires_grad]
    if text_projection is not None:
        names += [f"text_projection.{n}" for n, p in text_projection.named_parameters() if p.requires_grad]
    return names
