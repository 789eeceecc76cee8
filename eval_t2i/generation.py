"""Diffusers pipelines for the evaluation: loading, the four arms, and seeded batched generation.

Arms (docs/design.md "Neg Score"), all on the same prompts and seeds:
`base`; `base+negprompt` (the negated concepts moved to `negative_prompt` and out of the prompt);
`swapped` (the negation encoder put in with `integrations.diffusion.swap_text_encoders`);
`swapped+negprompt` (stacked: the prompt as written, which the negation encoder reads, plus the negated
concepts as `negative_prompt`: `integrations.negation_kwargs(..., keep_prompt=True)`). One pipeline is
loaded; the arms switch its text encoder(s) in place.

Seeds: image i gets its own `torch.Generator("cpu").manual_seed(seed_i)`, passed to the pipeline as a
list, so its initial latents depend on its seed alone: the same (prompt, seed, arm) gives the same
image in a batch of 1 or of 8, and every arm starts from the same latents for the same seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from PIL import Image

from integrations.routes import FLUX_TRUE_CFG, negation_prompts, t5_prompt_key, uses_true_cfg
from negation_encoder.devices import resolve
from negation_encoder.errors import IncompatibleModelError, InputError

from .prompts import PromptItem


@dataclass(frozen=True)
class Arm:
    """What an arm sends: the swapped encoder or the pipeline's own; the negated concepts as a negative
    prompt (`negprompt`) or dropped (`omit`: the affirmative part alone, the reference for an encoder
    that reads "no fork" as silence, where the negative prompt is the reference for avoidance).
    `keep_prompt`: with the negative prompt, the prompt goes as written instead of its affirmative part (the
    stacked arm: the negation encoder reads the "no" the pipeline's own encoder would draw)."""

    name: str
    swapped: bool
    negprompt: bool
    omit: bool = False
    keep_prompt: bool = False


ARMS = {a.name: a for a in (Arm("base", False, False), Arm("base+negprompt", False, True),
                            Arm("omit", False, False, omit=True),
                            Arm("swapped", True, False), Arm("swapped+negprompt", True, True, keep_prompt=True))}


def parse_arms(text: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in names if a not in ARMS]
    if bad or not names:
        raise InputError(f"--arms: unknown arm(s) {', '.join(bad) or '(none)'}; expected a comma list of "
                         f"{', '.join(ARMS)}")
    return names


def arm_prompt(item: PromptItem, arm: Arm, splitter=None) -> tuple[str, str | None]:
    """(prompt, negative_prompt) an arm sends for this item. With a negative prompt, the split the file
    gives (multi-negation set) wins; otherwise the training-free route of `integrations.routes` makes
    it (`negation_prompts`, the parse `negation_kwargs` hands a pipeline, with the arm's `keep_prompt`),
    so this arm IS that route."""
    if not (arm.negprompt or arm.omit):
        return item.prompt, None
    if item.affirmative is not None:
        affirmative, negative = item.affirmative, ", ".join(item.negated_concepts) or None
    else:
        (affirmative,), (negative,) = negation_prompts([item.prompt], splitter=splitter)
    if arm.omit:
        return affirmative, None
    return (item.prompt if arm.keep_prompt else affirmative), negative


def arm_t5_prompt(item: PromptItem, arm: Arm, splitter=None) -> str | None:
    """What a T5 beside the swapped CLIP (Flux, SD3) reads in an arm that keeps the prompt: the affirmative
    part, as `negation_kwargs(..., keep_prompt=True)` sends it (a T5 was never taught "no"); None otherwise."""
    if not (arm.keep_prompt and arm.negprompt):
        return None
    return arm_prompt(item, ARMS["base+negprompt"], splitter)[0]


def resolve_device_dtype(device: str | None, dtype: str) -> tuple[torch.device, torch.dtype]:
    return resolve(device, dtype)


# What diffusers and transformers print for each prompt longer than the tokenizer's window (the cut-off tail,
# padding tokens included: kilobytes of <|endoftext|> per batch); a run says it once instead
# (`prompts.truncation_note`).
TRUNCATION_NOTES = ("The following part of your input was truncated",
                    "Token indices sequence length is longer than the specified maximum")


class _DropTruncationNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TRUNCATION_NOTES)


def silence_truncation_notes() -> None:
    """Drop the per-prompt truncation notes of diffusers and transformers (every other message stays)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    diffusers_logging.get_logger("diffusers")  # the libraries attach their handlers on first use
    hf_logging.get_logger("transformers")
    for name in ("diffusers", "transformers"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropTruncationNotes) for f in handler.filters):
                handler.addFilter(_DropTruncationNotes())


def load_pipeline(path: str, device: torch.device, dtype: torch.dtype):
    """Any diffusers text-to-image pipeline from a model id or a local folder (safety checker off:
    a blacked-out image would be scored as a judge failure, not as what the model drew)."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, safety_checker=None)
    except (OSError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--pipeline {path}: cannot load a diffusers pipeline ({first})") from None
    if not hasattr(pipe, "text_encoder"):
        raise InputError(f"--pipeline {path}: {type(pipe).__name__} has no text_encoder to evaluate")
    pipe.set_progress_bar_config(disable=True)
    silence_truncation_notes()
    return pipe.to(device)


class ArmSwitcher:
    """Holds the pipeline's own encoders and the negation encoder(s); `use(arm)` puts the right ones in.

    The negation encoder is checked against the pipeline when it is loaded (swap, then swap back), so
    an encoder that does not fit fails before any image is generated.
    """

    def __init__(self, pipe, encoder: str | None = None, encoder_2: str | None = None):
        from integrations.diffusion import clip_slots, load_slot_encoders, swap_text_encoders

        self.pipe = pipe
        slots = clip_slots({k: type(getattr(pipe, k, None)).__name__ for k in ("text_encoder", "text_encoder_2")})
        self.base = {k: getattr(pipe, k) for k in slots}
        self.negation: dict | None = None
        if encoder is None:
            return
        dtype = pipe.text_encoder.dtype
        try:
            new = load_slot_encoders(slots, encoder, encoder_2, ("--encoder", "--encoder-2"), dtype=dtype)
        except InputError:
            raise  # already one line naming the flag and what the folder is
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"--encoder {encoder}: cannot load the negation text encoder ({first})") from None
        try:
            swap_text_encoders(pipe, **new)
        except IncompatibleModelError as e:
            raise IncompatibleModelError(f"--encoder {encoder}: does not fit --pipeline ({e})") from None
        self.negation = {k: getattr(pipe, k) for k in new}
        pipe.register_modules(**self.base)

    def use(self, arm: Arm) -> None:
        if arm.swapped and self.negation is None:
            raise InputError(f"arm {arm.name!r} needs --encoder")
        self.pipe.register_modules(**(self.negation if arm.swapped else self.base))


@dataclass(frozen=True)
class GenerationConfig:
    """What the pipeline is called with (part of a run's identity: a resumed run must match it)."""

    steps: int = 50
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    true_cfg_scale: float = FLUX_TRUE_CFG  # pipelines whose negative prompt needs true CFG (Flux)


def generate(pipe, prompts: list[str], negative_prompts: list[str | None], seeds: list[int],
             config: GenerationConfig, t5_prompts: list[str | None] | None = None) -> list[Image.Image]:
    """One batched pipeline call; image i from its own CPU generator seeded with seeds[i]. A pipeline whose
    negative prompt needs true CFG (Flux) gets `true_cfg_scale` when the batch has a negative prompt, and a
    pipeline with a T5 gets `t5_prompts` (None: the prompt) in its T5 argument, as
    `integrations.negation_kwargs` would pass them."""
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    negs = [n or "" for n in negative_prompts]  # "" is what diffusers uses for "no negative prompt"
    extra = {"true_cfg_scale": config.true_cfg_scale} if uses_true_cfg(pipe) and any(negs) else {}
    t5_key = t5_prompt_key(pipe) if t5_prompts and any(t is not None for t in t5_prompts) else None
    if t5_key is not None:
        extra[t5_key] = [p if t is None else t for p, t in zip(prompts, t5_prompts, strict=True)]
    out = pipe(prompt=prompts, negative_prompt=negs, generator=generators, num_inference_steps=config.steps,
               guidance_scale=config.guidance_scale, height=config.height, width=config.width, output_type="pil",
               **extra)
    return list(out.images)
