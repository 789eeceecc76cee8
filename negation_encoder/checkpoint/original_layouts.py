"""Key names of the original CLIP layouts (OpenAI's `clip` and open_clip) and transformers' `CLIPModel`.

OpenAI's `CLIP` module and open_clip's `CLIP` name their weights alike:

    token_embedding.weight, positional_embedding,
    transformer.resblocks.N.{ln_1, attn.in_proj_weight|in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj},
    ln_final, text_projection (a [width, embed] matrix used as x @ text_projection), logit_scale,
    visual.{class_embedding, conv1.weight, positional_embedding, ln_pre, transformer.resblocks.N.*, ln_post, proj}

transformers splits the fused attention input projection into q/k/v, stores projections as Linear
weights ([out, in], the transpose of the original matrices) and renames the rest. The mapping is
total and checked both ways: every original key has one place (or is reported as unmapped), every
place is filled (or reported as missing). The architecture is read from the shapes, as OpenAI's
`build_model` and open_clip's loaders do; only the head count is not in any shape.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from ..errors import IncompatibleModelError

# Written into OpenAI's TorchScript archives next to the weights; `clip.model.build_model` drops them too.
OPENAI_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# Non-persistent in open_clip, persisted by some older versions; rebuilt from the context length here.
IGNORED_KEYS = OPENAI_ARCHIVE_EXTRAS + ("attn_mask",)

# open_clip's ViT towers wider than B and L use head widths other than 64 (model_configs/*.json:
# ViT-H-14 80, ViT-g-14 88, ViT-bigG-14 104, ViT-e-14 112), so their head count is not width / 64.
OPEN_CLIP_VISION_HEADS = {1280: 16, 1408: 16, 1664: 16, 1792: 16}

# per-block names: original -> transformers (the fused attention projection is handled apart)
_BLOCK = (("ln_1.", "layer_norm1."), ("attn.out_proj.", "self_attn.out_proj."), ("ln_2.", "layer_norm2."),
          ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."))
_BLOCK_RE = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class Architecture:
    """What a CLIP state dict's shapes say (and the head counts, which they do not)."""

    vocab_size: int
    context_length: int
    text_width: int
    text_layers: int
    text_intermediate: int
    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_intermediate: int
    patch_size: int
    image_size: int
    text_heads: int
    vision_heads: int

    def as_dict(self) -> dict:
        return asdict(self)


def _layers(sd: dict, prefix: str) -> int:
    found = {int(m.group(2)) for k in sd for m in [_BLOCK_RE.match(k)] if m and (m.group(1) or "") == prefix}
    return max(found) + 1 if found else 0


def _heads(width: int, given: int | None, table: dict[int, int], what: str, flag: str) -> int:
    heads = given or table.get(width) or width // 64
    if heads <= 0 or width % heads:
        raise IncompatibleModelError(f"cannot infer the {what} tower's attention heads from width {width} (the source "
                                     f"projects use width / 64); pass {flag}")
    return heads


def infer_architecture(sd: dict[str, torch.Tensor], text_heads: int | None = None, vision_heads: int | None = None,
                       open_clip: bool = False) -> Architecture:
    """Widths, layers, patch and image size, context length and vocabulary from the shapes."""
    if any(k.startswith("visual.layer1.") for k in sd):
        raise IncompatibleModelError("a ResNet image tower (visual.layer1.*, as in CLIP RN50): transformers' CLIPModel "
                                     "has ViT image towers only; convert a ViT checkpoint (B/32, B/16, L/14, L/14@336)")
    need = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection",
            "visual.conv1.weight", "visual.positional_embedding", "visual.proj")
    missing = [k for k in need if k not in sd and not (k == "text_projection" and "text_projection.weight" in sd)]
    if missing:
        raise IncompatibleModelError(f"not a CLIP ViT state dict in the OpenAI/open_clip layout: missing {', '.join(missing[:4])}"
                                     f"{' ...' if len(missing) > 4 else ''} (keys seen: {', '.join(sorted(sd)[:3])} ...)")
    vocab, text_width = sd["token_embedding.weight"].shape
    context = sd["positional_embedding"].shape[0]
    proj = sd.get("text_projection")
    embed_dim = proj.shape[1] if proj is not None else sd["text_projection.weight"].shape[0]
    conv = sd["visual.conv1.weight"]
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    if grid * grid + 1 != sd["visual.positional_embedding"].shape[0]:
        raise IncompatibleModelError(f"visual.positional_embedding has {sd['visual.positional_embedding'].shape[0]} "
                                     "positions, not a square grid plus the class token")
    text_layers, vision_layers = _layers(sd, ""), _layers(sd, "visual.")
    if not text_layers or not vision_layers:
        raise IncompatibleModelError("no transformer.resblocks.* found for the "
                                     f"{'text' if not text_layers else 'image'} tower")
    fc = "transformer.resblocks.0.mlp.c_fc.weight"
    for key in (fc, "visual." + fc):
        if key not in sd:
            raise IncompatibleModelError(f"missing {key}")
    return Architecture(
        vocab_size=int(vocab), context_length=int(context), text_width=int(text_width), text_layers=text_layers,
        text_intermediate=int(sd[fc].shape[0]), embed_dim=int(embed_dim), vision_width=int(vision_width),
        vision_layers=vision_layers, vision_intermediate=int(sd["visual." + fc].shape[0]), patch_size=int(patch),
        image_size=int(patch * grid),
        text_heads=_heads(int(text_width), text_heads, {}, "text", "--text-heads"),
        vision_heads=_heads(int(vision_width), vision_heads, OPEN_CLIP_VISION_HEADS if open_clip else {}, "image",
                            "--vision-heads"),
    )


def _block_to_transformers(rest: str, tensor: torch.Tensor, out: dict, dst: str) -> bool:
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if rest.endswith("weight") else "bias"
        q, k, v = tensor.chunk(3, dim=0)
        for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
            out[f"{dst}.self_attn.{name}.{kind}"] = part
        return True
    for src, new in _BLOCK:
        if rest.startswith(src) and rest[len(src):] in ("weight", "bias"):
            out[dst + "." + new + rest[len(src):]] = tensor
            return True
    return False


_TOP = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "text_projection.weight": "text_projection.weight",  # open_clip's Linear form (no bias)
    "logit_scale": "logit_scale",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}


def to_transformers(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(CLIPModel state dict, original keys that have no place in it). Tensors are not copied."""
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in sd.items():
        if key in IGNORED_KEYS:
            continue
        if key in _TOP:
            out[_TOP[key]] = tensor
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = tensor.t()
        else:
            m = _BLOCK_RE.match(key)
            prefix = m and f"{'vision_model' if m.group(1) else 'text_model'}.encoder.layers.{m.group(2)}"
            if not (m and _block_to_transformers(m.group(3), tensor, out, prefix)):
                unmapped.append(key)
    return out, unmapped


def text_to_open_clip(text_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers text-tower keys (`text_model.*`, `text_projection.weight`) -> open_clip's text keys, with the
    q/k/v projections fused into `attn.in_proj_*` and the projection stored as the [width, embed] matrix."""
    inverse_top = {v: k for k, v in _TOP.items() if not k.startswith(("visual.", "text_projection", "logit_scale"))}
    out: dict[str, torch.Tensor] = {}
    layer_re = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(.+)$")
    fused: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in text_sd.items():
        if key.endswith("position_ids"):
            continue
        if key in inverse_top:
            out[inverse_top[key]] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.t().contiguous()
        elif m := layer_re.match(key):
            i, rest = int(m.group(1)), m.group(2)
            qkv = re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if qkv:
                fused.setdefault((i, qkv.group(2)), {})[qkv.group(1)] = tensor
                continue
            for src, new in _BLOCK:
                if rest.startswith(new):
                    out[f"transformer.resblocks.{i}.{src}{rest[len(new):]}"] = tensor
                    break
            else:
                raise IncompatibleModelError(f"no open_clip name for {key}")
        else:
            raise IncompatibleModelError(f"no open_clip name for {key}")
    for (i, kind), parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise IncompatibleModelError(f"layer {i} lacks one of its q/k/v {kind} tensors")
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]]).contiguous()
    return out


def expected_original_keys(arch: Architecture, linear_projection: bool = False) -> set[str]:
    """Every key an OpenAI/open_clip ViT CLIP of this architecture has (logit_scale included)."""
    block = ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
             "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias")
    keys = {"token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "logit_scale",
            "text_projection.weight" if linear_projection else "text_projection",
            "visual.class_embedding", "visual.conv1.weight", "visual.positional_embedding", "visual.ln_pre.weight",
            "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"}
    keys |= {f"transformer.resblocks.{i}.{b}" for i in range(arch.text_layers) for b in block}
    keys |= {f"visual.transformer.resblocks.{i}.{b}" for i in range(arch.vision_layers) for b in block}
    return keys
