"""Through a frozen diffusion UNet: the swapped prompt's prediction toward the negative-prompt teacher of
the base encoder (or the plain denoising target), on the records' images.

The core may run a diffusers *model* (a UNet, a VAE, a scheduler's arithmetic); it never runs a pipeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ...conditioning import read_text
from ...configs import option
from ...errors import ConfigError, InputError
from .base import CheckContext, LossTerm, Plan, SetupContext, StepInfo, StepOutputs, TermConfig, TermLoss
from .padded import VIEW, PaddedRows
from .registry import register

MODES = ("teacher", "denoise")


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


@dataclass
class UNetConfig(TermConfig):
    model: str = option("", "diffusers pipeline folder whose frozen unet/ (and scheduler/, vae/) the term runs",
                        path=True)
    mode: str = option("teacher", "teacher (the negative-prompt route's prediction) | denoise (the plain "
                       "denoising target)", choices=MODES)
    guidance: float = option(4.0, "the guidance scale g of the negative-prompt teacher")
    batch_size: int = option(16, "negated examples per optimizer step fed to the UNet (global)")
    on_policy: bool = option(False, "teacher: x_t from the teacher's own sampling trajectories instead of noised "
                             "training images")
    sample_steps: int = option(10, "DDPM steps of the teacher's trajectories (on_policy)")

    def problems(self) -> list[str]:
        p = super().problems()
        for name in ("batch_size", "sample_steps"):
            if getattr(self, name) <= 0:
                p.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight and not self.model:
            p.append("unet_loss needs model (a diffusers pipeline folder with unet/ and scheduler/)")
        if self.on_policy and self.mode != "teacher":
            p.append("on_policy needs mode teacher (the trajectories are the teacher's)")
        if self.mode == "teacher" and not self.guidance > 1:
            p.append(f"guidance must be > 1 for the teacher (a negative prompt acts only then), got {self.guidance!r}")
        return p


@register
class UNetTerm(LossTerm):
    name = "unet_loss"
    config_class = UNetConfig
    summary = ("through a frozen diffusers UNet: the swapped prompt's prediction toward the exact negative-prompt "
               "teacher eps(A) - (1 - 1/g)(eps(N) - eps('')) of the base encoder, or the plain denoising target")
    records = "true captions the splitter finds a negation in"
    needs_base_tower = True

    def __init__(self, config: UNetConfig, train):
        super().__init__(config, train)
        self.positive, self.affirmative, self.negated = (PaddedRows(w) for w in ("positive", "affirmative", "negated"))
        self.denoiser: FrozenDenoiser | None = None
        self.empty: torch.Tensor | None = None
        self.keys: list[str] = []

    def eligible(self, example) -> bool:
        return example.has_negation

    def no_eligible_reason(self, n: int) -> str:
        return self.without(f"the negation splitter finds no negation in any of the {n} true captions")

    def check(self, ctx: CheckContext) -> dict:
        """`model` holds a UNet and its scheduler, and the UNet cross-attends to states of the base's width."""
        folder = Path(self.config.model)
        for sub in ("unet", "scheduler"):
            if not (folder / sub).is_dir():
                raise InputError(f"unet_loss model {folder}: no {sub}/ folder (expected a diffusers pipeline folder)")
        try:
            unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"unet_loss model {folder}: cannot read unet/config.json ({e})") from None
        PaddedRows.check(self.name, ctx)
        width = ctx.base_config.text_config.hidden_size
        if unet_cfg.get("cross_attention_dim") != width:
            raise ConfigError(f"unet_loss model {folder}: its UNet's cross_attention_dim "
                              f"{unet_cfg.get('cross_attention_dim')} does not match the base's text width {width}")
        return {}

    def prepare(self, ctx: SetupContext) -> None:
        self.positive.prepare(ctx)
        self.affirmative.prepare(ctx, base=True)
        self.negated.prepare(ctx, base=True)
        self.denoiser = FrozenDenoiser(self.config.model, ctx.train.data.images, ctx.device, ctx.frozen_dtype)
        self.keys = ctx.keys
        # the unconditional branch a pipeline's guidance uses: the base's empty prompt, held fixed
        how = ctx.train.pipeline.reading()
        enc = ctx.tokenizer([""], padding="max_length", max_length=how.length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            self.empty = read_text(ctx.base_text, None, enc.input_ids.to(ctx.device), enc.attention_mask.to(ctx.device),
                                   replace(how, pooled=None))[0].float()

    def collate(self, examples, index, texts, foils):
        return {**self.positive.collate(index), **self.affirmative.collate(index), **self.negated.collate(index),
                "rows": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}

    def plan(self, batch, info: StepInfo) -> Plan:
        rows = self.rows(batch)
        gen = torch.Generator().manual_seed(((info.seed * 1_000_003 + info.step) * 97 + info.micro) * 31 + info.rank)
        picked = torch.nonzero(rows["rows"]).flatten()[: max(1, self.config.batch_size // info.world)]
        return Plan([self.positive.request(rows), *self.affirmative.base_requests(rows),
                     *self.negated.base_requests(rows)], (picked, gen))

    def forward(self, out: StepOutputs, batch, plan: Plan) -> TermLoss:
        picked, gen = plan.data
        states = out.block(VIEW, "positive").hidden
        if len(picked) == 0:
            return TermLoss(states.sum() * 0.0, 0)
        c, den = self.config, self.denoiser
        keys = [self.keys[int(i)] for i in batch.image_index[picked].tolist()]
        if c.mode == "denoise":
            xt, t, target = den.noisy(den.clean(keys), gen)
            return TermLoss(torch.nn.functional.mse_loss(den.out(xt, t, states[picked]), target), len(picked))
        rows = self.rows(batch)
        aff = self.affirmative.base_states(out, rows)[picked]
        neg = self.negated.base_states(out, rows)[picked]
        if c.on_policy:
            xt, t = den.on_policy(aff, neg, c.guidance, c.sample_steps, gen)
        else:
            xt, t, _ = den.noisy(den.clean(keys), gen)
        target = den.teacher(xt, t, aff, neg, self.empty.expand(len(picked), -1, -1), c.guidance)
        return TermLoss(torch.nn.functional.mse_loss(den.out(xt, t, states[picked]), target), len(picked))
