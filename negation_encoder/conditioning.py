"""What a downstream pipeline reads from a CLIP text tower, and reading it the same way.

A text encoder swapped into a pipeline only helps if it was trained on what that pipeline reads, and the
pipelines read different things (each pipeline's `encode_prompt` in diffusers):

| family | slot | token states | mask | pooled |
|---|---|---|---|---|
| `sd1`, `sd2` | text_encoder | `last_hidden_state` (the final norm applied), 77 positions, padding included | no | - |
| `sdxl` | text_encoder | `hidden_states[-2]` (no final norm) | no | - |
| `sdxl` | text_encoder_2 | `hidden_states[-2]` (no final norm) | no | projected (`text_embeds`) |
| `sd3` | text_encoder, text_encoder_2 | `hidden_states[-2]` (no final norm) | no | projected |
| `flux` | text_encoder | - | no | `pooler_output` (not projected) |
| `clipseg` | (the model's CLIP) | - | yes | projected (`conditional_embeddings`) |
| `if` | text_encoder | `last_hidden_state` | yes | - |

With `clip_skip=k`, SD 1.x/2.x read `hidden_states[-(k+1)]` with the final norm applied, SDXL and SD3
`hidden_states[-(k+2)]` without it. `read_text` computes what a `Reading` says with the same operations the
pipelines use, so a term trained on it sees, bit for bit, what the pipeline will feed its UNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .errors import ConfigError

POOLED = ("projected", "pooler")


@dataclass(frozen=True)
class Reading:
    """One pipeline's reading of one CLIP text tower (module docstring)."""

    states_layer: int | None = -1  # index into hidden_states of the token states read; None: no states read
    final_norm: bool = True  # the tower's final layer norm is applied to those states
    attention_mask: bool = False  # the tower is called with the prompt's attention mask
    length: int = 77  # positions the prompt is padded to
    pooled: str | None = None  # "projected" (text_projection(pooler_output)), "pooler" (pooler_output), or None

    def __post_init__(self):
        if self.pooled not in (None, *POOLED):
            raise ConfigError(f"pooled must be one of {', '.join(POOLED)} or none, got {self.pooled!r}")
        if self.states_layer is None and self.pooled is None:
            raise ConfigError("a reading reads token states, a pooled output, or both")
        if self.length <= 0:
            raise ConfigError(f"length must be > 0, got {self.length}")

    @property
    def reads_last_hidden_state(self) -> bool:
        """Whether the states read are exactly the tower's `last_hidden_state` (its last layer, normed)."""
        return self.states_layer == -1 and self.final_norm

    def to_dict(self) -> dict:
        return asdict(self)


FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "clipseg", "if")
SLOTS = {"sd1": ("text_encoder",), "sd2": ("text_encoder",), "sdxl": ("text_encoder", "text_encoder_2"),
         "sd3": ("text_encoder", "text_encoder_2"), "flux": ("text_encoder",), "clipseg": ("text_encoder",),
         "if": ("text_encoder",)}


def reading(family: str, slot: str = "text_encoder", clip_skip: int | None = None, length: int = 77) -> Reading:
    """The reading of `slot` in a pipeline of `family`, honouring `clip_skip` as that pipeline does."""
    if family not in FAMILIES:
        raise ConfigError(f"pipeline family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if slot not in SLOTS[family]:
        raise ConfigError(f"a {family} pipeline has no CLIP slot {slot!r}; its slots: {', '.join(SLOTS[family])}")
    skip = clip_skip or 0
    if skip < 0:
        raise ConfigError(f"clip_skip must be >= 0, got {clip_skip}")
    if skip and family in ("flux", "clipseg", "if"):
        raise ConfigError(f"clip_skip has no meaning for a {family} pipeline (it reads no skipped layer)")
    if family in ("sd1", "sd2"):
        return Reading(states_layer=-(skip + 1), final_norm=True, length=length)
    if family in ("sdxl", "sd3"):
        pooled = "projected" if (family == "sd3" or slot == "text_encoder_2") else None
        return Reading(states_layer=-(skip + 2), final_norm=False, length=length, pooled=pooled)
    if family == "flux":
        return Reading(states_layer=None, length=length, pooled="pooler")
    if family == "clipseg":
        return Reading(states_layer=None, attention_mask=True, length=length, pooled="projected")
    return Reading(states_layer=-1, final_norm=True, attention_mask=True, length=length)  # if


def read_text(text_model, text_projection, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              how: Reading) -> tuple[torch.Tensor | None, torch.Tensor | None, object]:
    """(token states, pooled output, the tower's output) as `how` reads them, by the operations the
    pipelines use (`text_model` is a CLIPTextTransformer or CLIPTextModel; `text_projection` may be None when
    nothing projected is read). The mask is passed only when the reading passes one."""
    mask = attention_mask if how.attention_mask else None
    hidden_states = how.states_layer is not None and not how.reads_last_hidden_state
    out = text_model(input_ids=input_ids, attention_mask=mask, output_hidden_states=hidden_states)
    states = None
    if how.states_layer is not None:
        if how.reads_last_hidden_state:
            states = out.last_hidden_state
        else:
            states = out.hidden_states[how.states_layer]
            if how.final_norm:
                final_norm = getattr(text_model, "final_layer_norm", None) or text_model.text_model.final_layer_norm
                states = final_norm(states)
    pooled = None
    if how.pooled == "pooler":
        pooled = out.pooler_output
    elif how.pooled == "projected":
        pooled = text_projection(out.pooler_output)
    return states, pooled, out
