"""Put a negation-aware text encoder into a diffusers pipeline, with checks before anything runs.

SD 1.x / 2.x read `text_encoder` (CLIPTextModel); SDXL also `text_encoder_2`
(CLIPTextModelWithProjection); SD3 two CLIPTextModelWithProjection (its T5 stays); Flux one
CLIPTextModel (its T5 stays). Only the text encoder changes, so nothing else is retrained:

    pipe = negation_pipeline("CompVis/stable-diffusion-v1-4", "ORG/negation-clip-l14")

`clip_skip`: diffusers 0.42's SD pipelines call `text_encoder.text_model.final_layer_norm`, which
transformers 5's flat `CLIPTextModel` does not have; `encode_prompt_clip_skip` computes the same
`prompt_embeds` from the hidden states, and `generate` passes them in.
"""

from __future__ import annotations

from typing import Any

import torch

from negation_encoder.checkpoint.layout import ROLE_SUBFOLDER as ROLES
from negation_encoder.errors import IncompatibleModelError, InputError


def load_negation_text_encoder(path_or_repo: str, role: str = "text_encoder", flag: str = "",
                               **from_pretrained_kwargs):
    """Load the encoder a pipeline role needs from a checkpoint folder (`negation_encoder.checkpoint.layout`),
    a CLIPModel or CLIPTextModel(WithProjection) folder, or a Hub repo of one of those.

    What the source holds is checked first (`negation_encoder.checkpoint.sources.text_tower`): a folder that
    is not a CLIP text tower (a BERT, a T5, a pipeline without a CLIP text_encoder/) is one
    IncompatibleModelError naming it, never a CLIP class with random weights. `flag` prefixes that message
    (the CLI passes its option name)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from negation_encoder.checkpoint.sources import text_tower

    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    where = text_tower(path_or_repo, role, flag)
    cls = CLIPTextModel if where.kind == "text" else CLIPTextModelWithProjection
    return _quiet_from_pretrained(cls, where.path, where.subfolder, **from_pretrained_kwargs)


def _quiet_from_pretrained(cls, path: str, subfolder: str | None, **kwargs):
    """`cls.from_pretrained`; from a whole CLIPModel's folder without transformers' table of the vision
    weights a text tower does not take (expected there, and pages long)."""
    from transformers.utils import logging as hf_logging

    if subfolder is not None:
        return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return cls.from_pretrained(path, **kwargs)
    finally:
        hf_logging.set_verbosity(level)


CLIP_CLASSES = {"CLIPTextModel": "text_encoder", "CLIPTextModelWithProjection": "text_encoder_2"}


def clip_slots(pipeline_classes: dict[str, str]) -> dict[str, str]:
    """{pipeline slot: the checkpoint role whose class it holds} for the CLIP slots of a pipeline, from the
    class name each slot holds: SD 1.x/2.x and Flux hold a CLIPTextModel in `text_encoder`; SDXL adds a
    CLIPTextModelWithProjection in `text_encoder_2`; SD3 holds CLIPTextModelWithProjection in both. T5 slots
    are left out (they are not CLIP)."""
    return {slot: CLIP_CLASSES[cls] for slot, cls in pipeline_classes.items()
            if slot in ("text_encoder", "text_encoder_2") and cls in CLIP_CLASSES}


def load_slot_encoders(slots: dict[str, str], encoder: str, encoder_2: str | None = None,
                       flags: tuple[str, str] = ("", ""), **from_pretrained_kwargs) -> dict[str, object]:
    """The negation encoder for every CLIP slot of a pipeline (`clip_slots`), each with the class its slot
    holds (`text_encoder/` or `text_encoder_with_projection/` of the checkpoint); `encoder_2` feeds the
    second slot when given. `flags`: the option names of `encoder` and `encoder_2`, for messages."""
    out = {}
    for slot, role in slots.items():
        second = slot == "text_encoder_2" and encoder_2
        out[slot] = load_negation_text_encoder(encoder_2 if second else encoder, role, flags[1] if second else flags[0],
                                               **from_pretrained_kwargs)
    return out


def check_compatibility(unet_config: Any, text_encoder=None, text_encoder_2=None, tokenizer=None,
                        current_text_encoder=None, current_text_encoder_2=None) -> None:
    """Raise IncompatibleModelError naming both sizes when an encoder cannot drive this UNet / transformer / tokenizer.

    `unet_config` is the denoiser's config: a UNet's (SD 1.x/2.x/SDXL) or SD3's transformer.
    """
    te1 = text_encoder if text_encoder is not None else current_text_encoder
    te2 = text_encoder_2 if text_encoder_2 is not None else current_text_encoder_2
    cross = _get(unet_config, "cross_attention_dim")
    if cross is None and _get(unet_config, "joint_attention_dim") is not None:
        slot2 = current_text_encoder_2 if current_text_encoder_2 is not None else te2
        if slot2 is not None and getattr(slot2.config, "model_type", "") != "clip_text_model":
            _check_flux(unet_config, te1, text_encoder_2)  # Flux: CLIP + T5; only the CLIP one is ours
        else:
            _check_sd3(unet_config, te1, te2)
    elif te2 is not None:
        w1 = te1.config.hidden_size if te1 is not None else 0
        w2 = te2.config.hidden_size
        if w1 + w2 != cross:
            raise IncompatibleModelError(f"text encoder widths {w1} + {w2} = {w1 + w2} do not match the UNet's "
                                         f"cross_attention_dim {cross} (SDXL concatenates both encoders' hidden "
                                         "states)")
        add_in = _get(unet_config, "projection_class_embeddings_input_dim")
        time_dim = _get(unet_config, "addition_time_embed_dim")
        proj = getattr(te2.config, "projection_dim", None)
        if add_in is not None and time_dim and proj is not None and (add_in - proj) % time_dim:
            raise IncompatibleModelError(f"text_encoder_2 projection_dim {proj} does not fit the UNet's "
                                         f"add-embedding input {add_in} (= projection_dim + k * "
                                         f"addition_time_embed_dim {time_dim})")
    elif te1 is not None and te1.config.hidden_size != cross:
        raise IncompatibleModelError(f"text encoder hidden size {te1.config.hidden_size} does not match the "
                                     f"UNet's cross_attention_dim {cross}")
    for name, te in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
        if te is None or tokenizer is None:
            continue
        if len(tokenizer) > te.config.vocab_size:
            raise IncompatibleModelError(f"{name} has a vocabulary of {te.config.vocab_size} tokens but the "
                                         f"pipeline's tokenizer has {len(tokenizer)}: the encoder was trained with "
                                         "another tokenizer")
        if tokenizer.model_max_length > te.config.max_position_embeddings:
            raise IncompatibleModelError(f"{name} has {te.config.max_position_embeddings} positions but the "
                                         f"tokenizer pads to {tokenizer.model_max_length}")


def _check_sd3(config: Any, te1, te2) -> None:
    """SD3: the two CLIP encoders' projections concatenate into the pooled input, their hidden states
    (zero-padded to the T5 width) into the joint attention input."""
    pooled, joint = _get(config, "pooled_projection_dim"), _get(config, "joint_attention_dim")
    if te1 is None or te2 is None:
        return
    p1, p2 = te1.config.projection_dim, te2.config.projection_dim
    if p1 + p2 != pooled:
        raise IncompatibleModelError(f"text encoder projections {p1} + {p2} = {p1 + p2} do not match the SD3 "
                                     f"transformer's pooled_projection_dim {pooled}")
    w = te1.config.hidden_size + te2.config.hidden_size
    if w > joint:
        raise IncompatibleModelError(f"text encoder widths {te1.config.hidden_size} + {te2.config.hidden_size} = "
                                     f"{w} exceed the SD3 transformer's joint_attention_dim {joint}")


def _check_flux(config: Any, te1, new_te2) -> None:
    """Flux reads the CLIP encoder's pooled output (its hidden size) as the pooled projection; the
    second encoder is T5 and is not a CLIP role."""
    if new_te2 is not None:
        raise IncompatibleModelError("Flux's text_encoder_2 is a T5 encoder; only its CLIP text_encoder can be "
                                     "replaced")
    pooled = _get(config, "pooled_projection_dim")
    if te1 is not None and te1.config.hidden_size != pooled:
        raise IncompatibleModelError(f"text encoder hidden size {te1.config.hidden_size} does not match the Flux "
                                     f"transformer's pooled_projection_dim {pooled}")


def _get(config: Any, key: str):
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def swap_text_encoders(pipe, text_encoder=None, text_encoder_2=None):
    """Replace the pipeline's CLIP text encoder(s) in place (dtype and device follow the pipeline's)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is None:
        raise IncompatibleModelError(f"{type(pipe).__name__} has neither a unet nor a transformer to check the "
                                     "encoders against")
    check_compatibility(denoiser.config, text_encoder, text_encoder_2, getattr(pipe, "tokenizer", None),
                        getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
    if text_encoder_2 is not None and not hasattr(pipe, "text_encoder_2"):
        raise IncompatibleModelError(f"{type(pipe).__name__} has no text_encoder_2 to replace")
    device, dtype = denoiser.device, denoiser.dtype
    updates = {}
    if text_encoder is not None:
        updates["text_encoder"] = text_encoder.to(device=device, dtype=dtype)
    if text_encoder_2 is not None:
        updates["text_encoder_2"] = text_encoder_2.to(device=device, dtype=dtype)
    pipe.register_modules(**updates)
    return pipe


def negation_pipeline(base: str, encoder: str, encoder_2: str | None = None, pipeline_class=None,
                      **from_pretrained_kwargs):
    """One call: a diffusers pipeline from `base` with the negation-aware encoder(s) swapped in.

    Every CLIP slot the pipeline has gets the negation encoder in the class it holds (SD 1.x/2.x and Flux:
    `text_encoder`; SDXL: both; SD3: both, with projection; T5 slots stay). For SDXL and SD3, `encoder_2`
    feeds the second slot (SDXL's is a wider bigG model); without it the same folder is tried, and the
    width checks, which run before the pipeline loads, say whether it fits.
    """
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    pipeline_class = pipeline_class or DiffusionPipeline
    if "torch_dtype" in from_pretrained_kwargs:  # the older spelling; diffusers and transformers now read `dtype`
        from_pretrained_kwargs["dtype"] = from_pretrained_kwargs.pop("torch_dtype")
    loader_kwargs = {k: v for k, v in from_pretrained_kwargs.items() if k in ("dtype", "revision", "token",
                                                                           "cache_dir", "local_files_only")}
    config_kwargs = {k: v for k, v in loader_kwargs.items() if k != "dtype"}
    index = DiffusionPipeline.load_config(base, **config_kwargs)
    classes = {k: v[1] for k, v in index.items() if isinstance(v, (list, tuple)) and len(v) == 2 and v[1]}
    denoiser = "unet" if "unet" in classes else "transformer"
    denoiser_config = UNet2DConditionModel.load_config(base, subfolder=denoiser, **config_kwargs)  # any model's config.json
    slots = clip_slots(classes)  # SDXL's second slot takes `encoder_2`, else this folder's projection tower if it fits
    components = load_slot_encoders(slots, encoder, encoder_2, **loader_kwargs)
    t5 = classes.get("text_encoder_2") not in (None, *CLIP_CLASSES)
    check_compatibility(denoiser_config, text_encoder=components.get("text_encoder"),
                        text_encoder_2=components.get("text_encoder_2"),
                        current_text_encoder_2=_ClassTag(classes["text_encoder_2"]) if t5 else None)
    return pipeline_class.from_pretrained(base, **components, **from_pretrained_kwargs)


class _ClassTag:
    """Stands for a pipeline component not loaded yet, by its class name (enough for the T5 check)."""

    def __init__(self, name: str):
        self.config = type("Config", (), {"model_type": "t5" if "T5" in name else name.lower()})()


@torch.no_grad()
def encode_prompt_clip_skip(pipe, prompt: str | list[str], clip_skip: int) -> torch.Tensor:
    """SD 1.x/2.x `prompt_embeds` with `clip_skip`: the hidden state `clip_skip` layers before the last,
    passed through the final layer norm, exactly as diffusers defines it."""
    te = pipe.text_encoder
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(te.device)
    hidden = te(ids, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
    norm = te.final_layer_norm if hasattr(te, "final_layer_norm") else te.text_model.final_layer_norm
    return norm(hidden).to(pipe.unet.dtype)


def generate(pipe, prompt: str | list[str], clip_skip: int | None = None, negative_prompt: str | list[str] | None = None,
             **kwargs):
    """Call the pipeline; with `clip_skip` on a single-encoder pipeline, compute the embeddings ourselves."""
    if clip_skip is None or hasattr(pipe, "text_encoder_2"):
        return pipe(prompt, negative_prompt=negative_prompt, clip_skip=clip_skip, **kwargs)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    embeds = encode_prompt_clip_skip(pipe, prompts, clip_skip)
    neg = negative_prompt if negative_prompt is not None else ""
    negs = [neg] * len(prompts) if isinstance(neg, str) else list(neg)
    neg_ids = pipe.tokenizer(negs, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(pipe.text_encoder.device)
    with torch.no_grad():
        neg_embeds = pipe.text_encoder(neg_ids)[0].to(pipe.unet.dtype)
    return pipe(prompt_embeds=embeds, negative_prompt_embeds=neg_embeds, **kwargs)


# The reading each pipeline class gives a CLIP slot (`negation_encoder.conditioning`): what a negation encoder
# for that pipeline should be trained on (TrainConfig's `pipeline` group).
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd1", "StableDiffusionImg2ImgPipeline": "sd1", "StableDiffusionInpaintPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl", "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux",
    "IFPipeline": "if",
}


def pipeline_family(pipe) -> str:
    """The conditioning family of a loaded pipeline (SD 2.x reads as SD 1.x: `sd1`), from its class."""
    name = type(pipe).__name__
    if name not in PIPELINE_FAMILIES:
        raise IncompatibleModelError(f"{name}: no known reading of its CLIP text encoders; known pipelines: "
                                     f"{', '.join(PIPELINE_FAMILIES)}")
    return PIPELINE_FAMILIES[name]


def pipeline_reading(pipe, slot: str = "text_encoder", clip_skip: int | None = None):
    """What `pipe` reads from the CLIP text tower in `slot` (a `conditioning.Reading`): the layer, the final
    norm, the mask and the length its `encode_prompt` uses, honouring `clip_skip` as it does."""
    from negation_encoder.conditioning import reading

    tokenizer = getattr(pipe, "tokenizer_2" if slot == "text_encoder_2" else "tokenizer", None)
    length = getattr(tokenizer, "model_max_length", 77) if tokenizer is not None else 77
    return reading(pipeline_family(pipe), slot, clip_skip, length)
