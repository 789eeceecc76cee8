"""The frozen downstream models a downstream-aware term trains through (docs/design.md: the core may run a
transformers CLIPSeg *model*; it never runs a diffusers pipeline).

`seg_loss` reads ReferringRecords (image, text, mask, optional other_mask and affirmative) and a frozen
`CLIPSegForImageSegmentation`: the trained text tower's projected embedding goes in as CLIPSeg's `conditional_embeddings` (CLIPSeg computes
its own text conditioning under `torch.no_grad()`, so passing it in is the way to train through it). The
decoder and the vision tower stay frozen, as they will be when the encoder is swapped in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import RecordError
from ..data.referring import ReferringRecord, read_referring
from ..errors import InputError
from .batching import TokenTable, batch_indices
from .config import TrainConfig

SEG_SEED_OFFSET = 7_919  # the referring samples' order is its own seeded stream, independent of the main batches


@dataclass
class SegInputs:
    """Checked before any compute: the records, where their files live, and the CLIPSeg to load."""

    records: list[ReferringRecord]
    roots: list[Path]
    model: str


def check_seg_inputs(cfg: TrainConfig, base_config) -> SegInputs:
    """seg_data readable and complete (every image and mask present), seg_model a CLIPSeg whose text tower
    has the base's widths (the trained tower must fit it): one line naming the culprit, before compute."""
    from transformers import AutoConfig

    try:
        seg_config = AutoConfig.from_pretrained(cfg.seg_model)
    except (OSError, ValueError) as e:
        raise InputError(f"seg_model {cfg.seg_model}: cannot load its config ({str(e).splitlines()[0]})") from None
    if getattr(seg_config, "model_type", None) != "clipseg":
        raise InputError(f"seg_model {cfg.seg_model}: expected a CLIPSeg checkpoint (model_type 'clipseg'), got "
                         f"{getattr(seg_config, 'model_type', None)!r}")
    widths = (seg_config.text_config.hidden_size, seg_config.projection_dim)
    base = (base_config.text_config.hidden_size, base_config.projection_dim)
    if widths != base:
        raise InputError(f"seg_model {cfg.seg_model}: text width {widths[0]} / projection {widths[1]} do not fit the "
                         f"base's {base[0]} / {base[1]}; seg_loss needs the CLIPSeg built on this CLIP")
    records, roots = [], []
    for path in cfg.seg_data:
        try:
            recs = read_referring(path)
        except RecordError as e:
            raise InputError(str(e)) from None
        root = Path(cfg.seg_images) if cfg.seg_images else Path(path).parent
        for i, r in enumerate(recs, start=1):
            for key in (r.image, r.mask, *([r.other_mask] if r.other_mask else [])):
                if not (root / key).is_file():
                    raise InputError(f"{path}: record {r.id!r} (line {i}): {key!r} not found under {root}")
        records += recs
        roots += [root] * len(recs)
    if cfg.seg_affirm and not any(r.affirmative for r in records):
        raise InputError(f"seg_affirm {cfg.seg_affirm}: no record of seg_data ({', '.join(cfg.seg_data)}) has an "
                         "'affirmative' expression; add them or set seg_affirm to 0")
    return SegInputs(records, roots, cfg.seg_model)


@torch.no_grad()
def affirmative_targets(model, tokenizer, records: list[ReferringRecord], batch_size: int = 256
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, D) the base CLIPModel's UNnormalised projected embedding of each record's `affirmative`
    expression, zeros where it has none; (N,) which records have one). Computed once, before any step
    changes the model (seg_affirm's targets)."""
    from ..encoding import text_features

    has = torch.tensor([r.affirmative is not None for r in records], dtype=torch.bool)
    texts = list(dict.fromkeys(r.affirmative for r in records if r.affirmative is not None))
    device = next(model.parameters()).device
    found: dict[str, torch.Tensor] = {}
    for i in range(0, len(texts), batch_size):
        chunk = texts[i: i + batch_size]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=tokenizer.model_max_length,
                        return_tensors="pt").to(device)
        found.update(zip(chunk, text_features(model, enc.input_ids, enc.attention_mask).float().cpu(), strict=True))
    targets = torch.zeros(len(records), model.config.projection_dim)
    for i, r in enumerate(records):
        if r.affirmative is not None:
            targets[i] = found[r.affirmative]
    return targets, has


class FrozenSegmenter:
    """A frozen CLIPSeg and the referring samples it is fed, a seeded share per step and process."""

    def __init__(self, inputs: SegInputs, tokenizer, device, dtype: torch.dtype = torch.float32, others: bool = True,
                 affirm: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`others`: read each record's other_mask (only seg_choice needs them; skipping them saves a PNG
        read per sample and step). `affirm`: `affirmative_targets` of the records (seg_affirm)."""
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.model = CLIPSegForImageSegmentation.from_pretrained(inputs.model).to(device, dtype).eval()
        self.model.requires_grad_(False)
        self.processor = CLIPSegProcessor.from_pretrained(inputs.model)
        self.records, self.roots = inputs.records, inputs.roots
        self.table = TokenTable(tokenizer, [r.text for r in self.records])
        self.device, self.dtype, self.others = device, dtype, others
        self.affirm = affirm

    def sample(self, step: int, micro: int, cfg: TrainConfig, rank: int, world: int) -> list[int]:
        idx = batch_indices(step, micro, len(self.records), cfg.seg_batch_size, cfg.grad_accum,
                            cfg.seed + SEG_SEED_OFFSET)
        local = cfg.seg_batch_size // world
        return idx[rank * local: (rank + 1) * local]

    def inputs(self, rows: list[int]) -> tuple[torch.Tensor | None, ...]:
        """(input_ids, attention_mask, pixel_values, masks, other masks) for `rows`, masks at the decoder's
        output size; a record without `other_mask` gets an all-zero one (the choice part skips it); other
        masks are None when this segmenter does not read them."""
        from PIL import Image

        recs = [self.records[i] for i in rows]
        images = [Image.open(self.roots[i] / r.image).convert("RGB") for i, r in zip(rows, recs, strict=True)]
        pixels = self.processor.image_processor(images=images, return_tensors="pt").pixel_values
        size = tuple(pixels.shape[-2:])

        def load(key: str | None, root: Path, like: np.ndarray | None = None) -> np.ndarray:
            if key is None:
                return np.zeros_like(like)
            return np.asarray(Image.open(root / key).convert("L")) > 0

        masks = [load(r.mask, self.roots[i]) for i, r in zip(rows, recs, strict=True)]
        others = [load(r.other_mask, self.roots[i], m) for i, r, m in zip(rows, recs, masks, strict=True)] \
            if self.others else None

        def resized(arrays: list[np.ndarray]) -> torch.Tensor:
            t = torch.from_numpy(np.stack(arrays)).float()
            if tuple(t.shape[-2:]) != size:
                t = (F.interpolate(t[:, None], size=size, mode="nearest")[:, 0] > 0.5).float()
            return t.to(self.device)

        ids, attn = self.table.pad([r.text for r in recs])
        return (ids.to(self.device), attn.to(self.device), pixels.to(self.device, self.dtype), resized(masks),
                None if others is None else resized(others))

    def affirm_targets(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(the base's projected embeddings of `rows`' affirmative expressions, which rows have one), or None."""
        if self.affirm is None:
            return None
        return self.affirm[0][rows].to(self.device), self.affirm[1][rows].to(self.device)

    def logits(self, pixel_values: torch.Tensor, conditional_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, H, W) decoder logits; gradients flow into `conditional_embeddings` only."""
        out = self.model(pixel_values=pixel_values, conditional_embeddings=conditional_embeddings.to(self.dtype))
        return out.logits.reshape(len(pixel_values), *out.logits.shape[-2:]).float()


# ------------------------------------------------------------------------------------------------
# through a frozen diffusion UNet

UNET_MODES = ("teacher", "denoise")


def check_unet_inputs(cfg: TrainConfig, base_config) -> None:
    """unet_model holds a UNet and its scheduler, and the UNet cross-attends to states of the base's width."""
    import json

    folder = Path(cfg.unet_model)
    for sub in ("unet", "scheduler"):
        if not (folder / sub).is_dir():
            raise InputError(f"unet_model {cfg.unet_model}: no {sub}/ folder (expected a diffusers pipeline folder)")
    try:
        unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"unet_model {cfg.unet_model}: cannot read unet/config.json ({e})") from None
    width = base_config.text_config.hidden_size
    if unet_cfg.get("cross_attention_dim") != width:
        raise InputError(f"unet_model {cfg.unet_model}: its UNet's cross_attention_dim {unet_cfg.get('cross_attention_dim')}"
                         f" does not match the base's text width {width}")


class FrozenDenoiser:
    """A frozen text-conditioned UNet (and its noise schedule) from a diffusers pipeline folder, and the
    clean samples it is trained on: pixels for a pixel-space pipeline (IF, the world's generator), VAE
    latents for a latent one (SD), each image's latents computed once and kept (the image-embedding
    cache's idea: what does not change is computed once).

    Why the teacher target: a pipeline with guidance g and a negative prompt N predicts
    out(N) + g (out(A) - out(N)); the same pipeline with the encoder swapped and the negated prompt P
    predicts out(empty) + g (out(P) - out(empty)). They are equal when
        out(P) = out(A) - (1 - 1/g) (out(N) - out(empty)),
    so a swapped encoder whose states make the frozen UNet predict that, with the empty prompt's states
    held at the base's, reproduces the negative-prompt route image for image. Linear in the model's
    outputs, so it holds for epsilon and v prediction alike.
    """

    def __init__(self, folder: str, image_root: str, device, dtype: torch.dtype = torch.float32):
        from diffusers import DDPMScheduler, UNet2DConditionModel

        folder = Path(folder)
        self.unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").to(device, dtype).eval()
        self.unet.requires_grad_(False)
        self.schedule = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        self.alphas = self.schedule.alphas_cumprod.to(device)
        self.prediction = self.schedule.config.prediction_type
        self.vae = None
        if (folder / "vae").is_dir():
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").to(device, dtype).eval()
            self.vae.requires_grad_(False)
        self.channels = self.unet.config.in_channels
        self.image_root, self.device, self.dtype = Path(image_root), device, dtype
        self._clean: dict[str, torch.Tensor] = {}

    def clean(self, keys: list[str]) -> torch.Tensor:
        """(B, C, H, W) clean samples of image keys: pixels in [-1, 1] at the UNet's size, or scaled latents."""
        from PIL import Image

        todo = [k for k in dict.fromkeys(keys) if k not in self._clean]
        if todo:
            size = self.unet.config.sample_size * (8 if self.vae is not None else 1)
            arr = np.stack([np.asarray(Image.open(self.image_root / k).convert("RGB").resize((size, size)))
                            for k in todo])
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(self.device, self.dtype)
            if self.vae is not None:
                with torch.no_grad():
                    x = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
            self._clean.update(zip(todo, x, strict=True))
        return torch.stack([self._clean[k] for k in keys])

    def noisy(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, t, the model's training target for x_t) at uniformly drawn timesteps."""
        t = torch.randint(0, len(self.alphas), (len(x0),), generator=generator).to(self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device, self.dtype)
        a = self.alphas[t].view(-1, 1, 1, 1).to(self.dtype)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if self.prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        return xt, t, target

    def out(self, xt: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The UNet's prediction (its first `in_channels` channels: IF adds a variance half) for text states."""
        return self.unet(xt, t, encoder_hidden_states=states.to(self.dtype)).sample[:, :self.channels].float()

    @torch.no_grad()
    def on_policy(self, aff_states, neg_states, guidance: float, steps: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, t) where the teacher's own sampling goes: each example's negative-prompt trajectory (guided
        out(N) + g (out(A) - out(N)), `steps` DDPM steps from its own noise), cut at a step drawn at random.
        Off-policy states (noised training images) are states the sampler never visits for these prompts."""
        from diffusers import DDPMScheduler

        sched = DDPMScheduler.from_config(self.schedule.config)
        sched.set_timesteps(steps)
        n = len(aff_states)
        shape = (n, self.channels, self.unet.config.sample_size, self.unet.config.sample_size)
        x = torch.randn(shape, generator=generator).to(self.device, self.dtype)
        stop = torch.randint(0, steps, (n,), generator=generator)
        xs, ts = torch.empty_like(x), torch.empty(n, dtype=torch.long)
        for k, t in enumerate(sched.timesteps):
            here = stop == k
            if here.any():
                xs[here], ts[here] = x[here], int(t)
            if bool((stop <= k).all()):
                break
            tt = torch.full((n,), int(t), device=self.device)
            out_n, out_a = self.out(x, tt, neg_states), self.out(x, tt, aff_states)
            x = sched.step(out_n + guidance * (out_a - out_n), t, x, generator=generator).prev_sample.to(self.dtype)
        return xs, ts.to(self.device)

    @torch.no_grad()
    def teacher(self, xt, t, aff_states, neg_states, empty_states, guidance: float) -> torch.Tensor:
        """out(A) - (1 - 1/g) (out(N) - out(empty)): what the swapped prompt must predict (class docstring)."""
        a, n, e = (self.out(xt, t, s) for s in (aff_states, neg_states, empty_states))
        return a - (1 - 1 / guidance) * (n - e)
