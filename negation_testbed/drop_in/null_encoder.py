"""A null encoder: the world's base CLIP with seeded Gaussian noise on its text tower's weight matrices, in the
encoder checkpoint layout (`negenc testbed null-encoder`).

Why: a swapped encoder's affirmative-control subject rate is compared with the base's ("within 2 points",
#39). An encoder fine-tuned for negation must move the token states a generator reads; how much of the control
change is the meaning it learned, and how much is a generator's sensitivity to any change of its conditioning?
The null encoder changes the states by a chosen amount and no meaning on purpose (each matrix gets noise at
`scale` times its own standard deviation; embeddings, norms and biases are left as they are, so tokens stay
the tokens they were): `t2i-compare --encoder <null>` then measures the control cost of a drift that size on
each generator (docs/testbed.md)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.errors import InputError
from negation_encoder.runio import atomic_write_text

CARD = """# A null encoder (not fine-tuned)

The base CLIP at `{base}` with seeded Gaussian noise (scale {scale} of each weight matrix's standard deviation,
seed {seed}) on the {n} weight matrices of its text tower's layers; embeddings, norms, biases and the vision
tower are the base's. It learned nothing: it moves the token states a generator reads by a set amount and
no meaning, so `negenc testbed t2i-compare --encoder <this folder>` measures what a drift that size costs each
generator's affirmative control prompts. Written by `negenc testbed null-encoder`; see docs/testbed.md.
"""


def perturb_text_tower(model: CLIPModel, scale: float, seed: int = 0) -> list[str]:
    """Add N(0, (scale * std(W))^2) to every weight matrix of `model.text_model` except the embeddings, in
    place, drawn from one generator seeded with `seed` in parameter order; returns the names changed."""
    if not scale >= 0:
        raise InputError(f"--scale must be a number >= 0, got {scale}")
    g = torch.Generator().manual_seed(seed)
    changed = []
    with torch.no_grad():
        for name, p in model.text_model.named_parameters():
            if p.ndim >= 2 and "embeddings" not in name:
                p.add_(scale * p.std() * torch.randn(p.shape, generator=g, dtype=p.dtype))
                changed.append(name)
    return changed


def write_null_encoder(base: str | Path, out: str | Path, scale: float, seed: int = 0,
                       overwrite: bool = False) -> Path:
    """The base at `base` with `perturb_text_tower(scale, seed)`, exported to `out` (an encoder folder that
    t2i-compare and seg-compare take as `--encoder`). An existing `out` is refused unless `overwrite`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: exists and is not empty (pass --overwrite to replace it)")
    if not scale >= 0:
        raise InputError(f"--scale must be a number >= 0, got {scale}")
    model = CLIPModel.from_pretrained(base).eval()
    changed = perturb_text_tower(model, scale, seed)
    config = {"null_encoder": {"base": str(base), "scale": scale, "seed": seed, "perturbed": len(changed)}}
    export_checkpoint(model, CLIPTokenizer.from_pretrained(base), CLIPImageProcessor.from_pretrained(base), out,
                      training_config=config)
    # the generated card says "fine-tuned to read negation"; this folder's own card says what it is
    atomic_write_text(out / "README.md", CARD.format(base=base, scale=scale, seed=seed, n=len(changed)))
    return out
