"""The training-free route for generation: one parse of the prompt, handed to the pipeline the way it reads it.

`negation_kwargs(pipe, "a street with no cars")` returns `{"prompt": "a street", "negative_prompt": "cars",
...}` plus the switch the pipeline needs for a negative prompt to act: classifier-free guidance > 1 for
SD 1.x/2.x, SDXL and SD3 (their defaults already are), `true_cfg_scale > 1` for Flux (whose
`guidance_scale` is a distilled embedding and which ignores `negative_prompt` otherwise). When the call
would still ignore the negative prompt (a guidance scale <= 1 asked for), one warning line says so.
It works the same with the pipeline's own text encoder or a swapped negation encoder (stacking). Stacked,
pass `keep_prompt=True`: the prompt goes as written, "no" included, and only the negative prompt is added.
Why: the route strips the negation because the pipeline's own encoder reads "no cars" as "cars"; a
negation encoder reads it, and on the world's validation prompts the stripped prompt made the swapped
encoder lose the subject under a negative prompt where the prompt as written did not (docs/testbed.md,
"Stacking: the prompt as written").
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

from negation_encoder.errors import InputError
from negation_encoder.splitting import split_negation

FLUX_TRUE_CFG = 4.0  # what diffusers' Flux docs use to turn true CFG (and the negative prompt) on


class NegativePromptIgnored(UserWarning):
    """The pipeline call built here would not use its negative prompt."""


def _call_defaults(pipe) -> dict:
    params = inspect.signature(type(pipe).__call__).parameters
    return {k: p.default for k, p in params.items()}


def uses_true_cfg(pipe) -> bool:
    """True for pipelines whose negative prompt needs `true_cfg_scale > 1` (Flux and its kin)."""
    return "true_cfg_scale" in _call_defaults(pipe)


def t5_prompt_key(pipe) -> str | None:
    """The call argument that feeds the pipeline's T5 encoder (Flux: `prompt_2`, SD3: `prompt_3`), or None."""
    params = _call_defaults(pipe)
    for slot, key in (("text_encoder_3", "prompt_3"), ("text_encoder_2", "prompt_2")):
        encoder = getattr(pipe, slot, None)
        if encoder is not None and type(encoder).__name__.startswith("T5") and key in params:
            return key
    return None


def _merge(user: str | None, concepts: Sequence[str]) -> str | None:
    parts = [p.strip() for p in (user or "").split(",") if p.strip()]
    for c in concepts:
        if c.lower() not in {p.lower() for p in parts}:
            parts.append(c)
    return ", ".join(parts) or None


def negation_prompts(prompts: Sequence[str], negative_prompts: Sequence[str | None] | None = None,
                     splitter=None) -> tuple[list[str], list[str | None]]:
    """(prompts, negative prompts) of the route: each prompt's affirmative part, and its negated concepts
    merged with the user's own negative prompt (None where there is nothing to avoid). `splitter` is any
    object with `.split(text) -> NegationSplit` (default: the rule splitter)."""
    users = list(negative_prompts) if negative_prompts is not None else [None] * len(prompts)
    if len(users) != len(prompts):
        raise InputError(f"negative_prompt: {len(users)} given for {len(prompts)} prompts")
    split = splitter.split if splitter is not None else split_negation
    parts = [split(p) for p in prompts]
    return ([s.affirmative if s.has_negation else p for s, p in zip(parts, prompts, strict=True)],
            [_merge(u, s.negated) for u, s in zip(users, parts, strict=True)])


def negation_kwargs(pipe, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                    splitter=None, guidance_scale: float | None = None, true_cfg_scale: float | None = None,
                    keep_prompt: bool = False) -> dict:
    """Keyword arguments for `pipe(**kwargs, ...)`: each prompt's affirmative part as `prompt` (the prompt as
    written with `keep_prompt`: stacked on a negation encoder), its negated concepts merged with the user's
    own `negative_prompt`, and the guidance switch the pipeline needs. A prompt that negates nothing is
    passed unchanged. With `keep_prompt`, a T5 beside the swapped CLIP (Flux, SD3) still gets the
    affirmative part (`prompt_2` / `prompt_3`): it was never taught to read "no".
    """
    single = isinstance(prompt, str)
    prompts = [prompt] if single else list(prompt)
    users = [negative_prompt] * len(prompts) if negative_prompt is None or isinstance(negative_prompt, str) \
        else list(negative_prompt)
    stripped, negatives = negation_prompts(prompts, users, splitter)
    out_prompts = prompts if keep_prompt else stripped
    kwargs: dict = {"prompt": out_prompts[0] if single else out_prompts}
    t5_key = t5_prompt_key(pipe) if keep_prompt else None
    if t5_key is not None and stripped != prompts:
        kwargs[t5_key] = stripped[0] if single else stripped
    has_negative = any(n for n in negatives)
    if has_negative:
        kwargs["negative_prompt"] = (negatives[0] or "") if single else [n or "" for n in negatives]
    defaults = _call_defaults(pipe)
    if uses_true_cfg(pipe):
        scale = true_cfg_scale if true_cfg_scale is not None else (FLUX_TRUE_CFG if has_negative else None)
        if scale is not None:
            kwargs["true_cfg_scale"] = scale
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        if has_negative and (scale is None or scale <= 1):
            warnings.warn(f"{type(pipe).__name__} ignores negative_prompt unless true_cfg_scale > 1 "
                          f"(got {scale})", NegativePromptIgnored, stacklevel=2)
        return kwargs
    scale = guidance_scale if guidance_scale is not None else defaults.get("guidance_scale")
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    if has_negative and isinstance(scale, (int, float)) and scale <= 1:
        warnings.warn(f"{type(pipe).__name__} ignores negative_prompt at guidance_scale {scale} (classifier-free "
                      "guidance needs > 1)", NegativePromptIgnored, stacklevel=2)
    return kwargs
