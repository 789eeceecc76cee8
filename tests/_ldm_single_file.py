"""A diffusers SD 1.x pipeline written as an original-layout (ldm) single file, for export tests.

The inverse of diffusers' `single_file_utils` conversions (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`), written from its key names for any
number of blocks and `layers_per_block`, so tiny pipelines can be saved the way CompVis' and
AUTOMATIC1111's files are. `test_export.py` checks it by loading the file back with `from_single_file`.
"""

from __future__ import annotations

import re

import torch

_UNET_TOP = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return dict(_RESNET).get(head, head) + "." + tail


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    per = unet.config.layers_per_block + 1
    up_has_attn = {i: hasattr(b, "attentions") for i, b in enumerate(unet.up_blocks)}
    out = {}
    for key, v in unet.state_dict().items():
        new = None
        for src, dst in _UNET_TOP.items():
            if key.startswith(src):
                new = dst + key[len(src):]
        if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            i = int(m[1])
            new = f"output_blocks.{i * per + per - 1}.{2 if up_has_attn[i] else 1}.conv.{m[2]}"
        assert new is not None, f"no ldm name for unet key {key}"
        out["model.diffusion_model." + new] = v
    return out


_VAE_TOP = {"conv_norm_out.": "norm_out."}
_VAE_ATTN = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    n_up = len(vae.decoder.up_blocks)
    out = {}
    for key, v in vae.state_dict().items():
        new = key
        if m := re.match(r"(encoder|decoder)\.(.+)", key):
            part, rest = m[1], m[2]
            if mm := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
                rest = f"down.{mm[1]}.block.{mm[2]}.{mm[3]}"
            elif mm := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", rest):
                rest = f"down.{mm[1]}.downsample.{mm[2]}"
            elif mm := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
                rest = f"up.{n_up - 1 - int(mm[1])}.block.{mm[2]}.{mm[3]}"
            elif mm := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest):
                rest = f"up.{n_up - 1 - int(mm[1])}.upsample.{mm[2]}"
            elif mm := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
                rest = f"mid.block_{int(mm[1]) + 1}.{mm[2]}"
            elif mm := re.match(r"mid_block\.attentions\.0\.(.+)", rest):
                inner = mm[1]
                for src, dst in _VAE_ATTN.items():
                    if inner.startswith(src):
                        inner = dst + inner[len(src):]
                rest = f"mid.attn_1.{inner}"
                if v.ndim == 2:  # the original stores the attention projections as 1x1 convolutions
                    v = v[:, :, None, None]
            for src, dst in _VAE_TOP.items():
                if rest.startswith(src):
                    rest = dst + rest[len(src):]
            new = f"{part}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        out["first_stage_model." + new] = v
    return out


def clip_to_ldm(text_encoder, prefix: str = "cond_stage_model.transformer.") -> dict[str, torch.Tensor]:
    tower = getattr(text_encoder, "text_model", text_encoder)
    return {f"{prefix}text_model.{k}": v for k, v in tower.state_dict().items()}


def sd1_single_file(pipe) -> dict[str, torch.Tensor]:
    sd = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder)}
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}
