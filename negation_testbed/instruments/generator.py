"""The world's text-to-image model (`negenc testbed pretrain-t2i`): a pixel-space diffusion UNet trained
on world images with the frozen *base* text encoder, as Stable Diffusion was trained with frozen CLIP.

Why this shape: the drop-in claim is about a generator that never saw the negation-aware encoder. The
UNet learns, from alt-text captions with the LAION-like sliver (`language.pretraining_caption`), to
read the base encoder's token states (77 padded positions, exactly what the pipeline feeds it); then
`negenc testbed t2i-compare` swaps another encoder in without retraining. Pixel space, 32x32x3: the
world is small enough that no VAE is needed. Cross-attention sits only at the 8x8 level (each world
cell is 2x2 tokens there): attention at 16x16 cost 3x the step time on one CPU core for no visible gain.

Why `IFPipeline`: it is diffusers' text-conditioned pipeline that denoises pixels directly (no VAE), so
a 32x32x3 `UNet2DConditionModel` is a complete generator, and the folder loads with plain
`DiffusionPipeline.from_pretrained` (no custom code, no `trust_remote_code`). Its T5 slots take any
`transformers` encoder: IF reads `text_encoder(ids, attention_mask)[0]`, which a `CLIPTextModel` returns as
its last hidden state, padded to 77 tokens as SD does, so `integrations.swap_text_encoders` and
`eval_t2i`'s arms work on it unchanged. The scheduler must be a DDPM-style one with `variance_type` in its
config (IF reads it at each step).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..world import language as L
from ..world.scenes import IMAGE_SIZE, render, sample_scene
from .base_clip import ASSETS, BASE_DIR

T2I_DIR = ASSETS / "t2i"
MAX_LENGTH = 77  # the pipeline pads every prompt to CLIP's 77 positions; training must see the same


@dataclass
class GeneratorConfig:
    """Defaults: the committed generator's. Each lever is chosen on `audit.validation_prompts` (fresh
    training-world captions, never the evaluation prompts); the measurements are in docs/testbed.md. The
    committed weights are `negenc testbed pretrain-t2i` with these defaults on two torch threads (runs with
    the same thread count give the same weights; another count sums in another order)."""

    seed: int = 0
    steps: int = 4000  # ~0.6 s a step on two threads: about 40 minutes on a 2-core machine
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    sliver: float = 0.03  # the base CLIP's corpus share of misaligned negation cues
    uncond_prob: float = 0.1  # captions dropped to "" so classifier-free guidance has an unconditional branch
    channels: tuple[int, ...] = (16, 32, 64)
    attention_head_dim: int = 8
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule: better than linear at 32x32 in pixels
    prediction_type: str = "v_prediction"  # or "epsilon" (the saved scheduler says which)
    snr_gamma: float = 5.0  # min-SNR-gamma loss weighting (Hang et al. 2023); 0 = the plain loss
    ema_max_decay: float = 0.999  # EMA of the weights, saved instead of the raw ones; 0 = no EMA
    ema_power: float = 2 / 3  # EMA warmup: decay = min(max, 1 - (1 + step) ** -power), as diffusers' EMAModel
    text_time_embedding: bool = True  # IF's pooled-text embedding added to the time embedding (every level)
    scale_shift: bool = True  # FiLM (scale and shift) of the time/text embedding in every resnet, as IF
    sampler: str = "dpmsolver++"  # the scheduler saved with the pipeline: "ddpm" or "dpmsolver++"
    timestep_sampling: str = "uniform"  # or "importance" (see `sample_timesteps`; not yet validated at full length)
    sample_steps: int = 20  # sampling settings t2i-compare uses by default (pretrain_info.json "sampling")
    guidance_scale: float = 7.0
    sampling_prompts: int = 64  # after training, `audit.choose_sampling` on this many validation prompts
    # picks the sampling settings saved with the pipeline; 0 keeps sample_steps / guidance_scale as set


def base_text_encoder(base: str | Path = BASE_DIR):
    """The base CLIP's text tower as a `CLIPTextModel` (what an SD-style pipeline holds)."""
    from transformers import CLIPModel, CLIPTextConfig, CLIPTextModel

    clip = CLIPModel.from_pretrained(base)
    te = CLIPTextModel(CLIPTextConfig.from_dict(clip.config.text_config.to_dict()))
    te.load_state_dict(clip.text_model.state_dict())
    return te.eval()


def build_unet(cfg: GeneratorConfig, cross_attention_dim: int):
    """IFPipeline splits the UNet output into a noise half and a variance half (its guidance step needs
    both), so the UNet has 6 output channels; with the scheduler's fixed variance the second half is
    discarded at sampling, and training reads only the first."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(cfg.seed)
    n = len(cfg.channels)
    extra = {}
    if cfg.text_time_embedding:
        extra.update(addition_embed_type="text", addition_embed_type_num_heads=cfg.attention_head_dim)
    if cfg.scale_shift:
        extra.update(resnet_time_scale_shift="scale_shift")
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=tuple(cfg.channels),
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=cross_attention_dim, attention_head_dim=cfg.attention_head_dim, norm_num_groups=8,
        **extra)


def build_scheduler(cfg: GeneratorConfig):
    """The training scheduler (DDPM: its `alphas_cumprod` define the forward process)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                         clip_sample=True, prediction_type=cfg.prediction_type, variance_type="fixed_small")


def sampling_scheduler(cfg: GeneratorConfig, thresholding: bool = True):
    """The scheduler saved with the pipeline. DPM-Solver++ (2M) reaches in ~20 steps what DDPM does in 50+;
    `thresholding` with `sample_max_value=1` clips the predicted image to [-1, 1] as DDPM's `clip_sample`,
    and IF reads `variance_type` (None here: the UNet's variance half is dropped). Latent generators pass
    `thresholding=False`: latents are not images in [-1, 1]."""
    if cfg.sampler == "ddpm":
        return build_scheduler(cfg)
    if cfg.sampler != "dpmsolver++":
        raise ValueError(f"GeneratorConfig.sampler must be 'ddpm' or 'dpmsolver++', got {cfg.sampler!r}")
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                                       prediction_type=cfg.prediction_type, algorithm_type="dpmsolver++",
                                       solver_order=2, thresholding=thresholding, sample_max_value=1.0)


def loss_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, cfg: GeneratorConfig) -> torch.Tensor:
    """Per-sample weights of the MSE: min-SNR-gamma (min(SNR, gamma) in x0 terms, divided by what the
    prediction target already weighs: SNR for epsilon, SNR + 1 for v), or ones."""
    if cfg.snr_gamma <= 0:
        return torch.ones(len(t))
    a = alphas_cumprod[t]
    snr = a / (1 - a)
    w = snr.clamp(max=cfg.snr_gamma)
    return w / snr if cfg.prediction_type == "epsilon" else w / (snr + 1)


def sample_timesteps(n: int, weights: torch.Tensor, cfg: GeneratorConfig,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, per-sample loss factor) whose expected loss equals the uniform-t loss weighted by `weights`.

    Why importance sampling: with min-SNR weights most of the loss comes from mid-noise steps, yet a
    uniform draw spends about half its (CPU-bound) samples where the weight is near zero; drawing t
    with q(t) = 0.9 w(t) / sum(w) + 0.1 / T and weighting by w(t) / (T q(t)) keeps the objective and
    raises the effective batch (for min-SNR-5 v-prediction, uniform draws use ~60% of it)."""
    if cfg.timestep_sampling == "uniform":
        t = torch.randint(0, len(weights), (n,), generator=gen)
        return t, weights[t]
    if cfg.timestep_sampling != "importance":
        raise ValueError(f"GeneratorConfig.timestep_sampling must be 'uniform' or 'importance', got {cfg.timestep_sampling!r}")
    q = 0.9 * weights / weights.sum() + 0.1 / len(weights)
    t = torch.multinomial(q, n, replacement=True, generator=gen)
    return t, weights[t] / (len(weights) * q[t])


class EMA:
    """An exponential moving average of the UNet's weights (what is saved when `ema_max_decay` > 0).

    Why: a small diffusion model trained briefly with a high learning rate samples much better from the
    averaged weights; the warmup (`1 - (1 + step) ** -power`) lets the average follow early training."""

    def __init__(self, model: torch.nn.Module, max_decay: float, power: float):
        self.max_decay, self.power = max_decay, power
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.max_decay, 1 - (1 + step) ** -self.power)
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v, 1 - decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def to_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> (N, 3, H, W) in [-1, 1], the range IFPipeline decodes from."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    enc = tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    return text_encoder(enc.input_ids, attention_mask=enc.attention_mask)[0]


def world_pipeline(unet, scheduler, text_encoder, tokenizer):
    """An `IFPipeline` with no safety checker or watermarker (they would alter what the UNet drew)."""
    from diffusers import IFPipeline

    pipe = IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                      safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_world_pipeline(out: str | Path, unet, scheduler, text_encoder, tokenizer) -> Path:
    """Write the pipeline folder (`model_index.json`, `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/`)."""
    out = Path(out)
    world_pipeline(unet, scheduler, text_encoder, tokenizer).save_pretrained(out, safe_serialization=True)
    return out


def pretrain_t2i(cfg: GeneratorConfig | None = None, out: str | Path = T2I_DIR, base: str | Path = BASE_DIR,
                 progress: bool = True, snapshots: tuple[int, ...] = ()) -> dict:
    """Train the UNet (text encoder frozen) and save the pipeline folder with `pretrain_info.json`.

    `snapshots`: after these many steps, also save the (EMA) pipeline to `out/step_<n>`, so a training
    length can be chosen on validation prompts from one run."""
    from .base_clip import world_tokenizer

    cfg = cfg or GeneratorConfig()
    torch.manual_seed(cfg.seed)
    tokenizer = world_tokenizer()
    text_encoder = base_text_encoder(base)
    text_encoder.requires_grad_(False)
    unet = build_unet(cfg, text_encoder.config.hidden_size)

    def batch(images: list[np.ndarray], captions: list[str]) -> tuple[torch.Tensor, dict]:
        return to_pixels(images), {"encoder_hidden_states": encode_captions(text_encoder, tokenizer, captions)}

    def save(trained_unet, folder: Path) -> None:
        save_world_pipeline(folder, trained_unet, sampling_scheduler(cfg), text_encoder, tokenizer)

    info = train_denoiser(cfg, unet, batch, save, Path(out), progress=progress, snapshots=snapshots)
    info.update(text_encoder="base (frozen)", command="negenc testbed pretrain-t2i")
    (Path(out) / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def train_denoiser(cfg: GeneratorConfig, unet, batch: Callable[[list[np.ndarray], list[str]], tuple[torch.Tensor, dict]],
                   save: Callable[[torch.nn.Module, Path], None], out: Path, progress: bool = True,
                   snapshots: tuple[int, ...] = (), desc: str = "pretrain world t2i") -> dict:
    """The diffusion training loop every world generator shares: world scenes with alt-text captions (the
    LAION-like sliver, `uncond_prob` of them dropped to ""), `batch(images, captions)` -> (clean input x0, the
    UNet's text keyword arguments), min-SNR-weighted v/epsilon loss, EMA; then `save(unet, folder)` and the
    sampling choice on validation prompts. Returns the run's info (config, time, loss, sampling)."""
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    scheduler = build_scheduler(cfg)
    alphas = scheduler.alphas_cumprod
    weights = loss_weights(alphas, torch.arange(cfg.train_timesteps), cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    ema = EMA(unet, cfg.ema_max_decay, cfg.ema_power) if cfg.ema_max_decay > 0 else None
    unet.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress)
    for step in bar:
        scenes = [sample_scene(rng, f"t2i-{step}-{i}", n_objects=(1, 2, 3)) for i in range(cfg.batch_size)]
        captions = [L.pretraining_caption(s, rng, cfg.sliver) if rng.random() >= cfg.uncond_prob else ""
                    for s in scenes]
        x0, text = batch([render(s)[0] for s in scenes], captions)
        noise = torch.randn(x0.shape, generator=gen)
        t, factor = sample_timesteps(len(scenes), weights, cfg, gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if cfg.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        err = F.mse_loss(unet(xt, t, **text).sample[:, : x0.shape[1]], target, reduction="none")
        loss = (err.mean((1, 2, 3)) * factor).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(unet, step)
        if step + 1 in snapshots:
            snap = copy.deepcopy(unet).eval()
            if ema is not None:
                ema.copy_to(snap)
            save(snap, out / f"step_{step + 1}")
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if not progress:
                print(f"step {step} loss {np.mean(losses[-50:]):.4f} {time.perf_counter() - start:.0f}s", flush=True)
    unet.eval()
    if ema is not None:
        ema.copy_to(unet)
    save(unet, out)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start  # training, not the choice
    sampling: dict = {"steps": cfg.sample_steps, "guidance_scale": cfg.guidance_scale, "scheduler": cfg.sampler}
    if cfg.sampling_prompts > 0:
        from .audit import choose_sampling

        choice = choose_sampling(out, n_prompts=cfg.sampling_prompts)
        sampling.update(steps=choice["best"]["steps"], guidance_scale=choice["best"]["guidance_scale"],
                        chosen_by=f"negation_testbed.instruments.audit.choose_sampling (reader subject rate on "
                                  f"{cfg.sampling_prompts} validation prompts)", table=choice["table"])
    return {"config": {**asdict(cfg), "channels": list(cfg.channels)},
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),  # wall time grows when the machine is shared
            "final_loss": round(float(np.mean(losses[-100:])), 4), "torch_threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in unet.parameters()), "sampling": sampling}
