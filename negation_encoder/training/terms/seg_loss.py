"""Segmentation through a frozen CLIPSeg: the trained tower's projected embedding goes in as CLIPSeg's
`conditional_embeddings` (CLIPSeg computes its own text conditioning under `torch.no_grad()`, so passing it
in is the way to train through it), and the decoder's logits are scored against referring masks.

It reads ReferringRecords (image, text, mask, optional other_mask), not NegationRecords. The decoder and the
vision tower stay frozen, as they will be when the encoder is swapped in. The decoder was trained with the
base encoder; this term teaches the encoder to say "the cup that is not red" in the decoder's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...configs import option
from ...data.records import RecordError
from ...data.referring import ReferringRecord, read_referring
from ...errors import ConfigError, InputError
from ..batching import TokenTable, batch_indices
from ..frozen_cache import nbytes
from ..losses import dice_loss, masked_mean
from .base import (
    CheckContext,
    LossTerm,
    Plan,
    Request,
    SetupContext,
    StepInfo,
    StepOutputs,
    TermConfig,
    TermLoss,
)
from .registry import register

SEED_OFFSET = 7_919  # the referring samples' order is its own seeded stream, independent of the main batches
VIEW = "referring"


class SegmentationLoss(nn.Module):
    """Binary cross-entropy plus `dice` x soft Dice of the decoder's logits against the referred object's
    mask (objects cover a small share of the pixels; BCE alone leaves predictions timid).

    `choice` x softplus(mean logit on the other object - mean logit on the referred one), on samples that
    name the other object (`other_mask`: the red cup "the cup that is not red" excludes): which object the
    decoder picks. BCE and Dice barely tell "both cups" from "the right cup" (both objects are a few percent
    of the pixels), and an encoder trained by them alone learns to drop the colour, not to exclude it:
    object choice stays at chance (docs/testbed.md, "Which object CLIPSeg picks")."""

    def __init__(self, dice: float = 1.0, choice: float = 0.0):
        super().__init__()
        self.dice = dice
        self.choice = choice

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
        masks = masks.to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, masks) + self.dice * dice_loss(logits, masks)
        if self.choice and others is not None:
            loss = loss + self.choice * choice_loss(logits, masks, others.to(logits.dtype))
        return loss


def choice_loss(logits: torch.Tensor, masks: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """softplus(mean logit over `others` - mean logit over `masks`), averaged over the samples whose other
    mask is not empty (a record without `other_mask` has an all-zero one and adds nothing); 0 if none has one."""
    has = others.flatten(1).sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0
    return F.softplus(masked_mean(logits, others) - masked_mean(logits, masks))[has].mean()


@dataclass
class SegConfig(TermConfig):
    model: str = option("", "CLIPSeg folder or Hub id whose frozen decoder the term runs", path=True)
    data: list[str] = option([], "ReferringRecord .jsonl file(s)", resume=True, path=True)
    images: str = option("", "image root of data's image and mask paths (default: each file's folder)", resume=True,
                         path=True)
    batch_size: int = option(32, "referring samples per optimizer step (global)")
    dice: float = option(1.0, "weight of the soft Dice part")
    choice: float = option(0.0, "weight of the object-choice part: softplus(mean decoder logit on the record's "
                           "other_mask - on its mask), on records that have an other_mask")

    def problems(self) -> list[str]:
        p = super().problems()
        if self.batch_size <= 0:
            p.append(f"batch_size must be > 0, got {self.batch_size}")
        for name in ("dice", "choice"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                p.append(f"{name} must be a finite number >= 0, got {v!r}")
        if self.weight and not (self.model and self.data):
            p.append("seg_loss needs model (a CLIPSeg folder) and data (ReferringRecord .jsonl files)")
        return p


@dataclass
class SegInputs:
    """Checked before any compute: the records, where their files live, and the CLIPSeg to load."""

    records: list[ReferringRecord]
    roots: list[Path]
    model: str


def check_seg_inputs(cfg: SegConfig, base_config) -> SegInputs:
    """`data` readable and complete (every image and mask present), `model` a CLIPSeg whose text tower has
    the base's widths (the trained tower must fit it): one line naming the culprit, before compute."""
    from transformers import AutoConfig

    try:
        seg_config = AutoConfig.from_pretrained(cfg.model)
    except (OSError, ValueError) as e:
        raise InputError(f"seg_loss model {cfg.model}: cannot load its config ({str(e).splitlines()[0]})") from None
    if getattr(seg_config, "model_type", None) != "clipseg":
        raise ConfigError(f"seg_loss model {cfg.model}: expected a CLIPSeg checkpoint (model_type 'clipseg'), got "
                          f"{getattr(seg_config, 'model_type', None)!r}")
    widths = (seg_config.text_config.hidden_size, seg_config.projection_dim)
    base = (base_config.text_config.hidden_size, base_config.projection_dim)
    if widths != base:
        raise ConfigError(f"seg_loss model {cfg.model}: text width {widths[0]} / projection {widths[1]} do not fit "
                          f"the base's {base[0]} / {base[1]}; seg_loss needs the CLIPSeg built on this CLIP")
    records, roots = [], []
    for path in cfg.data:
        try:
            recs = read_referring(path)
        except RecordError as e:
            raise InputError(str(e)) from None
        root = Path(cfg.images) if cfg.images else Path(path).parent
        for i, r in enumerate(recs, start=1):
            for key in (r.image, r.mask, *([r.other_mask] if r.other_mask else [])):
                if not (root / key).is_file():
                    raise InputError(f"{path}: record {r.id!r} (line {i}): {key!r} not found under {root}")
        records += recs
        roots += [root] * len(recs)
    return SegInputs(records, roots, cfg.model)


class FrozenSegmenter:
    """A frozen CLIPSeg and the referring samples it is fed, a seeded share per step and process.

    The decoder is what the trained text tower conditions; the vision tower's activations it reads depend on
    the image alone, so when they fit the frozen-output budget (`keep`) each record's activations and masks
    are computed (and its PNGs read) once, before the first step, in record order; otherwise every step."""

    def __init__(self, inputs: SegInputs, tokenizer, device, dtype: torch.dtype = torch.float32, others: bool = True):
        """`others`: read each record's other_mask (only the choice part needs them; skipping them saves a
        PNG read per sample)."""
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.model = CLIPSegForImageSegmentation.from_pretrained(inputs.model).to(device, dtype).eval()
        self.model.requires_grad_(False)
        self.processor = CLIPSegProcessor.from_pretrained(inputs.model)
        self.records, self.roots = inputs.records, inputs.roots
        self.table = TokenTable(tokenizer, [r.text for r in self.records])
        self.device, self.dtype, self.others = device, dtype, others
        self.kept: list[tuple] | None = None

    def keep(self, cache, chunk: int = 64) -> bool:
        """Compute every record's activations and masks now, if they fit `cache` (a FrozenCache)."""
        first = self._load([0])[0]
        if not cache.reserve("CLIPSeg activations and masks", nbytes(first) * len(self.records)):
            return False
        self.kept = [s for start in range(0, len(self.records), chunk)
                     for s in self._load(list(range(start, min(start + chunk, len(self.records)))))]
        return True

    def sample(self, info: StepInfo, batch_size: int) -> list[int]:
        idx = batch_indices(info.step, info.micro, len(self.records), batch_size, info.grad_accum,
                            info.seed + SEED_OFFSET)
        local = batch_size // info.world
        return idx[info.rank * local: (info.rank + 1) * local]

    def texts(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, attn = self.table.pad([self.records[i].text for i in rows])
        return ids.to(self.device), attn.to(self.device)

    def inputs(self, rows: list[int]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """(the vision tower's activations at the decoder's layers, masks at the decoder's output size, other
        masks or None when this segmenter does not read them) for `rows`. A record without `other_mask` gets
        an all-zero one (the choice part skips it)."""
        samples = self._load(rows) if self.kept is None else [self.kept[i] for i in rows]
        layers = len(samples[0][0])
        acts = [torch.stack([s[0][k] for s in samples]) for k in range(layers)]
        masks = torch.stack([s[1] for s in samples])
        others = torch.stack([s[2] for s in samples]) if self.others else None
        return acts, masks, others

    def _load(self, rows: list[int]) -> list[tuple]:
        """Per row: (its activations, one tensor per decoder layer; its mask; its other mask or None)."""
        from PIL import Image

        recs = [self.records[i] for i in rows]
        images = [Image.open(self.roots[i] / r.image).convert("RGB") for i, r in zip(rows, recs, strict=True)]
        pixels = self.processor.image_processor(images=images, return_tensors="pt").pixel_values
        size = tuple(pixels.shape[-2:])

        def load(key: str | None, root: Path, like: np.ndarray | None = None) -> np.ndarray:
            if key is None:
                return np.zeros_like(like)
            return np.asarray(Image.open(root / key).convert("L")) > 0

        def resized(arrays: list[np.ndarray]) -> torch.Tensor:
            t = torch.from_numpy(np.stack(arrays)).float()
            if tuple(t.shape[-2:]) != size:
                t = (F.interpolate(t[:, None], size=size, mode="nearest")[:, 0] > 0.5).float()
            return t.to(self.device)

        masks_np = [load(r.mask, self.roots[i]) for i, r in zip(rows, recs, strict=True)]
        masks = resized(masks_np)
        others = resized([load(r.other_mask, self.roots[i], m) for i, r, m in zip(rows, recs, masks_np, strict=True)]) \
            if self.others else None
        acts = self.activations(pixels.to(self.device, self.dtype))
        return [([a[j] for a in acts], masks[j], None if others is None else others[j]) for j in range(len(rows))]

    @torch.no_grad()
    def activations(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The vision tower's hidden states at the decoder's layers (what CLIPSeg's forward computes under
        `no_grad` before its decoder)."""
        out = self.model.clip.get_image_features(pixel_values=pixel_values, interpolate_pos_encoding=True,
                                                 output_hidden_states=True)
        return [out.hidden_states[i + 1] for i in self.model.extract_layers]

    def logits(self, activations: list[torch.Tensor], conditional_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, H, W) decoder logits; gradients flow into `conditional_embeddings` only."""
        out = self.model.decoder(activations, conditional_embeddings.to(self.dtype))
        return out.logits.reshape(len(conditional_embeddings), *out.logits.shape[-2:]).float()


@register
class Segmentation(LossTerm):
    name = "seg_loss"
    config_class = SegConfig
    summary = ("BCE (+ Dice) of a frozen CLIPSeg's decoder logits on referring masks, conditioned on this text "
               "tower's projected embedding; `choice` adds which object the decoder picks")
    records = "ReferringRecords in `data` (image, text, mask, optional other_mask)"
    reads_records = False

    def __init__(self, config: SegConfig, train):
        super().__init__(config, train)
        self.loss = SegmentationLoss(config.dice, config.choice)
        self.inputs: SegInputs | None = None
        self.segmenter: FrozenSegmenter | None = None

    def check(self, ctx: CheckContext) -> dict:
        self.inputs = check_seg_inputs(self.config, ctx.base_config)
        return {"referring_records": len(self.inputs.records)}

    def data_files(self) -> list[str]:
        return list(self.config.data)

    def prepare(self, ctx: SetupContext) -> None:
        self.segmenter = FrozenSegmenter(self.inputs, ctx.tokenizer, ctx.device, ctx.frozen_dtype,
                                         others=self.config.choice > 0)
        if ctx.cache is not None:
            self.segmenter.keep(ctx.cache)

    def plan(self, batch, info: StepInfo) -> Plan:
        rows = self.segmenter.sample(info, self.config.batch_size)
        ids, attn = self.segmenter.texts(rows)
        return Plan([Request(VIEW, "text", ids, attn, padding=False)], self.segmenter.inputs(rows))

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        activations, masks, others = plan.data
        logits = self.segmenter.logits(activations, out.block(VIEW, "text").projected)
        return TermLoss(self.loss(logits, masks, others), len(logits))
