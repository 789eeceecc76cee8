"""An encoder folder in the single-file formats the UIs load (`negenc export`).

ComfyUI's CLIPLoader / DualCLIPLoader read a text encoder file in transformers' key names
(`text_model.*`, `text_projection.weight`) and pick the model by its depth: a 32-layer file is CLIP-G
(SDXL's second encoder), a 24-layer one CLIP-H (SD 2.x), anything shallower CLIP-L (SD 1.x, SDXL's
first encoder). Each is built from a fixed config, so a file is only useful at exactly those sizes.

AUTOMATIC1111, ComfyUI's CheckpointLoader and diffusers' `from_single_file` read a whole model in the
original (ldm / sgm) layout:

    SD 1.x  cond_stage_model.transformer.text_model.*       CLIP-L, transformers key names
    SDXL    conditioner.embedders.0.transformer.text_model.* CLIP-L, transformers key names
            conditioner.embedders.1.model.*                 OpenCLIP bigG, open_clip key names: fused
                                                            attn.in_proj_*, text_projection [width, embed]

`merge_into_checkpoint` writes a copy of such a file with the encoder in its slot, every other tensor
untouched, and refuses an encoder whose shapes differ from the slot's (the UI would build the slot from
the checkpoint's own shapes, or fail to load it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import IncompatibleModelError, InputError
from . import layout
from .original_layouts import text_to_open_clip

FORMATS = ("comfyui", "sd-checkpoint")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ComfySlot:
    """A ComfyUI CLIP text encoder, as its fixed config builds it."""

    name: str
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    projection_dim: int
    hidden_act: str
    use: str
    vocab_size: int = 49408
    positions: int = 77

    def describe(self) -> str:
        return f"{self.name} ({self.hidden_size} wide, {self.layers} layers)"


COMFYUI_SLOTS = (
    ComfySlot("CLIP-L", 768, 12, 12, 3072, 768, "quick_gelu",
              "ComfyUI/models/text_encoders/: CLIPLoader (type stable_diffusion) for SD 1.x, or DualCLIPLoader "
              "(type sdxl) as the first file, beside a CLIP-G file, for SDXL"),
    ComfySlot("CLIP-H", 1024, 24, 16, 4096, 1024, "gelu",
              "ComfyUI/models/text_encoders/: CLIPLoader (type stable_diffusion) for SD 2.x"),
    ComfySlot("CLIP-G", 1280, 32, 20, 5120, 1280, "gelu",
              "ComfyUI/models/text_encoders/: DualCLIPLoader (type sdxl) as the second file, beside a CLIP-L file"),
)


@dataclass(frozen=True)
class SdSlot:
    """A text encoder slot of an original-layout checkpoint."""

    label: str
    prefix: str  # every key of the slot starts with it
    open_clip: bool  # open_clip key names (else transformers' `text_model.*`)


SD1_SLOT = SdSlot("SD 1.x text encoder (cond_stage_model.transformer)", "cond_stage_model.transformer.", False)
SDXL_SLOTS = (SdSlot("SDXL first text encoder (conditioner.embedders.0, CLIP-L)", "conditioner.embedders.0.transformer.",
                     False),
              SdSlot("SDXL second text encoder (conditioner.embedders.1, OpenCLIP bigG)", "conditioner.embedders.1.model.",
                     True))
# kept from the checkpoint: buffers and the CLIP logit scale the UIs carry but no text forward reads
_CARRIED = re.compile(r"(position_ids|logit_scale|attn_mask)$")


def load_text_tower(folder: str | os.PathLike, flag: str = "ENCODER_DIR") -> tuple[dict[str, torch.Tensor], object]:
    """({`text_model.*`, `text_projection.weight`}, text config) of an encoder checkpoint folder."""
    from transformers import CLIPTextModelWithProjection

    folder = layout.check_encoder_folder(folder, flag=flag)
    model = CLIPTextModelWithProjection.from_pretrained(str(folder), subfolder=layout.TEXT_ENCODER_WITH_PROJECTION)
    tower = getattr(model, "text_model", model)
    sd = {f"text_model.{k}": v.detach().clone().contiguous() for k, v in tower.state_dict().items()
          if not k.endswith("position_ids")}
    sd["text_projection.weight"] = model.text_projection.weight.detach().clone().contiguous()
    return sd, model.config


def comfyui_slot(config) -> ComfySlot:
    """The ComfyUI text encoder this config is, or one line saying why it is none of them."""
    have = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.projection_dim, config.hidden_act, config.vocab_size, config.max_position_embeddings)
    for slot in COMFYUI_SLOTS:
        if have == (slot.hidden_size, slot.layers, slot.heads, slot.intermediate_size, slot.projection_dim,
                    slot.hidden_act, slot.vocab_size, slot.positions):
            return slot
    sizes = "; ".join(f"{s.name} {s.hidden_size} wide, {s.layers} layers, {s.heads} heads, MLP {s.intermediate_size}, "
                      f"{s.hidden_act}" for s in COMFYUI_SLOTS)
    raise IncompatibleModelError(
        f"ComfyUI builds its CLIP text encoders from fixed configs ({sizes}; vocabulary 49408, 77 positions); this "
        f"encoder is {config.hidden_size} wide, {config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
        f"MLP {config.intermediate_size}, {config.hidden_act}, vocabulary {config.vocab_size}, "
        f"{config.max_position_embeddings} positions")


def _check_out(out: str | os.PathLike, overwrite: bool, into: str | os.PathLike | None = None) -> Path:
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"--out {out}: must end in .safetensors")
    if into is not None and out.exists() and Path(into).exists() and out.resolve() == Path(into).resolve():
        raise InputError(f"--out {out} is --into: write the merged model to a new file")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder")
    return out


def _save_atomic(tensors: dict[str, torch.Tensor], out: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_comfyui(folder: str | os.PathLike, out: str | os.PathLike, dtype: str = "fp32",
                   overwrite: bool = False) -> tuple[Path, ComfySlot]:
    """A ComfyUI text encoder file (transformers key names, with `text_projection.weight`)."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = _check_out(out, overwrite)
    sd, config = load_text_tower(folder)
    slot = comfyui_slot(config)
    tensors = {k: v.to(DTYPES[dtype]).contiguous() for k, v in sd.items()}
    return _save_atomic(tensors, out, {"format": "pt", "negation_encoder": f"text encoder, {slot.name}"}), slot


def read_single_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, safetensors metadata) of an original-layout model file (.safetensors, or a .ckpt pickle
    read weights-only)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--into {path}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(p), framework="pt") as f:
                metadata = dict(f.metadata() or {})
            return load_file(str(p), device="cpu"), metadata
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file, reported in one line
            raise InputError(f"--into {path}: cannot read it as safetensors ({type(e).__name__}: {e})") from None
    from .convert import read_checkpoint, state_dict_of

    obj, _ = read_checkpoint(p)
    return state_dict_of(obj, p), {}


def sd_layout(keys) -> tuple[str, tuple[SdSlot, ...]]:
    """("sd1" | "sdxl", its text encoder slots) from the key names; one line for anything else."""
    keys = list(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if not has("model.diffusion_model."):
        raise IncompatibleModelError("not an original-layout Stable Diffusion checkpoint (no model.diffusion_model.* "
                                     "keys; a diffusers folder takes the encoder folder directly)")
    if has(SD1_SLOT.prefix):
        return "sd1", (SD1_SLOT,)
    if has(SDXL_SLOTS[0].prefix) and has(SDXL_SLOTS[1].prefix):
        return "sdxl", SDXL_SLOTS
    if has("cond_stage_model.model."):
        raise IncompatibleModelError("an SD 2.x checkpoint (OpenCLIP ViT-H at cond_stage_model.model.*): only SD 1.x and "
                                     "SDXL checkpoints are supported")
    if has("conditioner.embedders.0.model."):
        raise IncompatibleModelError("an SDXL refiner checkpoint (only OpenCLIP bigG at conditioner.embedders.0.model.*): "
                                     "only SD 1.x and SDXL base checkpoints are supported")
    raise IncompatibleModelError("no SD 1.x (cond_stage_model.transformer.*) or SDXL (conditioner.embedders.0/1.*) "
                                 "text encoder keys in the checkpoint")


def _slot_tensors(ckpt: dict[str, torch.Tensor], slot: SdSlot) -> dict[str, torch.Tensor]:
    """The slot's tensors, keyed without its prefix; SD 1.x files from before transformers' `text_model.`
    level get it added, so both spellings compare alike."""
    out = {k[len(slot.prefix):]: v for k, v in ckpt.items() if k.startswith(slot.prefix)}
    if not slot.open_clip and out and not any(k.startswith("text_model.") for k in out):
        out = {f"text_model.{k}": v for k, v in out.items()}
    return out


def _width(slot_sd: dict[str, torch.Tensor], slot: SdSlot) -> int | None:
    key = "token_embedding.weight" if slot.open_clip else "text_model.embeddings.token_embedding.weight"
    return int(slot_sd[key].shape[1]) if key in slot_sd else None


def _slot_weights(text_sd: dict[str, torch.Tensor], slot: SdSlot) -> dict[str, torch.Tensor]:
    if slot.open_clip:
        return text_to_open_clip(text_sd)
    return {k: v for k, v in text_sd.items() if k.startswith("text_model.")}  # SD 1.x / SDXL CLIP-L: no projection


def _check_fits(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], slot: SdSlot, what: str) -> None:
    """Same keys (less carried buffers) and shapes; the first difference is the message."""
    names = {k for k in theirs if not _CARRIED.search(k)}
    layers_re = re.compile(r"(?:layers|resblocks)\.(\d+)\.")

    def depth(keys):
        return len({m.group(1) for k in keys for m in [layers_re.search(k)] if m})

    if depth(ours) != depth(names):
        raise IncompatibleModelError(f"{what} has {depth(ours)} layers but the checkpoint's {slot.label} has "
                                     f"{depth(names)}")
    lacking, extra = sorted(names - set(ours)), sorted(set(ours) - names)
    if lacking or extra:
        raise IncompatibleModelError(f"{what} does not have the keys of the checkpoint's {slot.label}: "
                                     + "; ".join(f"{n}: {', '.join(ks[:3])}" for n, ks in
                                                 (("missing", lacking), ("extra", extra)) if ks))
    for k in sorted(names):
        if tuple(ours[k].shape) != tuple(theirs[k].shape):
            raise IncompatibleModelError(f"{what}: {k} is {tuple(ours[k].shape)}, the checkpoint's {slot.label} has "
                                         f"{tuple(theirs[k].shape)}")


@dataclass
class Merge:
    out: Path
    kind: str
    slots: list[str]


def merge_into_checkpoint(folder: str | os.PathLike, into: str | os.PathLike, out: str | os.PathLike,
                          folder_2: str | os.PathLike | None = None, overwrite: bool = False) -> Merge:
    """Copy the SD 1.x / SDXL file `into` to `out` with the encoder (SDXL: in the slot its width fits, and
    `folder_2` in the second slot) in place of the original text encoder. `into` is never written."""
    out = _check_out(out, overwrite, into)
    ckpt, metadata = read_single_file(into)
    kind, slots = sd_layout(ckpt)
    encoders = [(str(folder), *load_text_tower(folder))]
    if folder_2 is not None:
        if kind != "sdxl":
            raise InputError("--encoder-2 is for SDXL checkpoints (their second text encoder); this is SD 1.x")
        encoders.append((str(folder_2), *load_text_tower(folder_2, "--encoder-2")))
    slot_sds = {s.prefix: _slot_tensors(ckpt, s) for s in slots}
    widths = {s.prefix: _width(slot_sds[s.prefix], s) for s in slots}
    placed: dict[str, tuple[str, dict, object]] = {}
    for i, (name, text_sd, config) in enumerate(encoders):
        if i == 1:
            slot = slots[1]
        else:
            # the first slot whose width matches (SDXL: CLIP-L first, then bigG)
            slot = next((s for s in slots if widths[s.prefix] == config.hidden_size), None)
            if slot is None:
                named = ", ".join(f"{s.label} is {widths[s.prefix]} wide" for s in slots)
                raise IncompatibleModelError(f"encoder {name} is {config.hidden_size} wide; {named}")
        if widths[slot.prefix] != config.hidden_size:
            raise IncompatibleModelError(f"encoder {name} is {config.hidden_size} wide; the {slot.label} is "
                                         f"{widths[slot.prefix]} wide")
        if slot.prefix in placed:
            raise InputError(f"the {slot.label} would get both {placed[slot.prefix][0]} and {name}; pass the first "
                             "encoder's (CLIP-L-sized) folder as ENCODER_DIR")
        placed[slot.prefix] = (name, text_sd, config)
    new = dict(ckpt)
    for s in slots:
        if s.prefix not in placed:
            continue
        name, text_sd, _ = placed[s.prefix]
        theirs = slot_sds[s.prefix]
        ours = _slot_weights(text_sd, s)
        _check_fits(ours, theirs, s, f"encoder {name}")
        for k in [k for k in new if k.startswith(s.prefix)]:
            del new[k]
        for k, v in theirs.items():
            if _CARRIED.search(k):
                new[s.prefix + k] = v
        for k, v in ours.items():
            new[s.prefix + k] = v.to(theirs[k].dtype).contiguous()
    metadata = {**metadata, "negation_encoder": "text encoder(s) replaced: " + ", ".join(
        f"{s.label} <- {Path(placed[s.prefix][0]).name}" for s in slots if s.prefix in placed)}
    return Merge(_save_atomic(new, out, metadata), kind, [s.label for s in slots if s.prefix in placed])
