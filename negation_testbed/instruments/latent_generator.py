"""The world's latent text-to-image models of the kinds users run (`negenc testbed pretrain-t2i --kind sd|sdxl`).

Why two more generators: the IF-style generator (`generator.py`) reads the text tower with the attention
mask, in pixel space, from one tower. The pipelines users run read it otherwise (`negation_encoder.conditioning`):

- **SD-style** (`StableDiffusionPipeline`): latent diffusion through an `AutoencoderKL`, the UNet reading the
  base tower's 77 `last_hidden_state` positions *without* the mask (padding states included).
- **SDXL-style** (`StableDiffusionXLPipeline`): two towers (here the world's base CLIP in both slots, the
  second with its projection), their penultimate states (`hidden_states[-2]`, no final norm) concatenated
  to 128 channels, and the second tower's projected pooled output with the size/crop time ids added to the
  time embedding (`addition_embed_type="text_time"`).

The UNet is trained on what the pipeline's own `encode_prompt` returns for each caption, so what it learns
to read is by construction what it is fed at sampling, and a swapped encoder is read the same way. The
unconditional branch is the encoding of "" in both (SDXL's `force_zeros_for_empty_prompt` is off, so
classifier-free guidance uses the branch the UNet was trained on).

The VAE: 32x32x3 world images to 16x16x4 latents (one downsampling; the world's 9-pixel shapes need the
detail), trained on world renders with a small KL weight; its `scaling_factor` is set to one over the latents'
standard deviation, as SD's was. One VAE serves both pipelines (`--vae` reuses a trained one).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..world.scenes import IMAGE_SIZE, render, sample_scene
from .base_clip import ASSETS, BASE_DIR
from .generator import GeneratorConfig, base_text_encoder, sampling_scheduler, to_pixels, train_denoiser

SD_DIR = ASSETS / "t2i_sd"
SDXL_DIR = ASSETS / "t2i_sdxl"
KINDS = ("sd", "sdxl")


@dataclass
class VAEConfig:
    """The world VAE (`pretrain_vae`). Defaults: the committed one's."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-5  # small, as SD's: the latents stay informative, the scaling factor normalises them
    channels: tuple[int, ...] = (16, 32)  # two levels: 32x32 -> 16x16 latents; (32, 64) costs 3x the step
    latent_channels: int = 4


@dataclass
class LatentGeneratorConfig(GeneratorConfig):
    """A latent generator (`pretrain_latent_t2i`); the fields it shares with `GeneratorConfig` mean the same.
    Defaults differ where latents differ: no `thresholding` (latents are not in [-1, 1]); three UNet levels on
    16x16 latents with cross-attention at 4x4 (each world cell is 2x2 tokens there); attention at 8x8 too
    cost 1.7x the step. As in the pixel generator, the SD-style UNet also pools the token states it is given
    into its time embedding (`addition_embed_type="text"`) and applies that embedding as a FiLM in every
    resnet: the 77 states the pipeline passes are still all it reads (SD 1.x's own UNet only lacks the
    pooling). A first run without the pooling and the FiLM drew the subject in 48% of validation prompts
    (reader), against 95% for the pixel generator. SDXL-style: the projected pooled output and the time ids
    (`text_time`) take the pooling's place, as in SDXL."""

    kind: str = "sd"
    steps: int = 3000
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: int = 1  # the lowest levels with cross-attention (1: 4x4; 2 adds 8x8 at 1.7x the step)
    addition_time_embed_dim: int = 16  # SDXL: each of the six size/crop ids embedded to this width
    vae: str | None = None  # a trained world VAE folder to reuse; None: train one first (VAEConfig defaults)
    vae_steps: int = 2000

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LatentGeneratorConfig.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def build_vae(cfg: VAEConfig):
    from diffusers import AutoencoderKL

    torch.manual_seed(cfg.seed)
    n = len(cfg.channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.channels),
                         layers_per_block=1, latent_channels=cfg.latent_channels, norm_num_groups=8,
                         sample_size=IMAGE_SIZE)


def _render_batch(rng: np.random.Generator, tag: str, n: int) -> torch.Tensor:
    return to_pixels([render(sample_scene(rng, f"{tag}-{i}", n_objects=(1, 2, 3)))[0] for i in range(n)])


def pretrain_vae(cfg: VAEConfig | None = None, out: str | Path | None = None, progress: bool = True) -> tuple:
    """Train the VAE on world renders (reconstruction MSE + `kl_weight` x KL); set `scaling_factor` from the
    latents of 512 fresh renders. Returns (vae, info); saves it to `out` when given."""
    cfg = cfg or VAEConfig()
    vae = build_vae(cfg)
    rng = np.random.default_rng(cfg.seed + 7)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    start = time.perf_counter()
    losses: list[float] = []
    vae.train()
    bar = tqdm(range(cfg.steps), desc="pretrain world VAE", disable=not progress)
    for step in bar:
        x = _render_batch(rng, f"vae-{step}", cfg.batch_size)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = torch.nn.functional.mse_loss(recon, x) + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    vae.eval()
    with torch.no_grad():
        x = _render_batch(np.random.default_rng(cfg.seed + 8), "vae-scale", 512)
        latents = vae.encode(x).latent_dist.mode()
        recon_mse = torch.nn.functional.mse_loss(vae.decode(latents).sample.clamp(-1, 1), x).item()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    info = {"config": {**asdict(cfg), "channels": list(cfg.channels)}, "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(np.mean(losses[-100:])), 5), "recon_mse_512": round(recon_mse, 5),
            "scaling_factor": vae.config.scaling_factor, "parameters": sum(p.numel() for p in vae.parameters())}
    if out is not None:
        vae.save_pretrained(out, safe_serialization=True)
        (Path(out) / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return vae, info


def base_text_encoder_with_projection(base: str | Path = BASE_DIR):
    """The base CLIP's text tower with its projection (`CLIPTextModelWithProjection`: SDXL's second slot)."""
    from transformers import CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

    clip = CLIPModel.from_pretrained(base)
    config = CLIPTextConfig.from_dict({**clip.config.text_config.to_dict(), "projection_dim": clip.config.projection_dim})
    te = CLIPTextModelWithProjection(config)
    te.text_model.load_state_dict(clip.text_model.state_dict())
    te.text_projection.load_state_dict(clip.text_projection.state_dict())
    return te.eval()


def build_latent_unet(cfg: LatentGeneratorConfig, cross_attention_dim: int, pooled_dim: int | None = None,
                      sample_size: int = IMAGE_SIZE // 2, vae_latents: int = 4):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(cfg.seed)
    n, a = len(cfg.channels), min(cfg.attention_levels, len(cfg.channels))
    extra: dict = {}
    if cfg.kind == "sdxl":
        extra.update(addition_embed_type="text_time", addition_time_embed_dim=cfg.addition_time_embed_dim,
                     projection_class_embeddings_input_dim=6 * cfg.addition_time_embed_dim + pooled_dim)
    elif cfg.text_time_embedding:
        extra.update(addition_embed_type="text", addition_embed_type_num_heads=cfg.attention_head_dim)
    if cfg.scale_shift:
        extra.update(resnet_time_scale_shift="scale_shift")
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=vae_latents, out_channels=vae_latents, layers_per_block=1,
        block_out_channels=tuple(cfg.channels),
        down_block_types=("DownBlock2D",) * (n - a) + ("CrossAttnDownBlock2D",) * a,
        up_block_types=("CrossAttnUpBlock2D",) * a + ("UpBlock2D",) * (n - a),
        cross_attention_dim=cross_attention_dim, attention_head_dim=cfg.attention_head_dim, norm_num_groups=8,
        **extra)


def latent_sampling_scheduler(cfg: LatentGeneratorConfig):
    """The pixel generator's sampler, without thresholding (latents are not images in [-1, 1])."""
    return sampling_scheduler(cfg, thresholding=False)


def latent_pipeline(kind: str, unet, vae, scheduler, tokenizer, text_encoder, text_encoder_2=None):
    """The diffusers pipeline of `kind`, with no safety checker or watermark (they would alter the images)."""
    if kind == "sd":
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       image_encoder=None, requires_safety_checker=False)
    else:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=False, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_conditioning(pipe, kind: str, captions: list[str]) -> dict:
    """The UNet's text inputs for `captions`, from the pipeline's own `encode_prompt` (what sampling feeds it)."""
    with torch.no_grad():
        if kind == "sd":
            embeds, _ = pipe.encode_prompt(captions, "cpu", 1, False)
            return {"encoder_hidden_states": embeds}
        embeds, _, pooled, _ = pipe.encode_prompt(captions, device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        size = (IMAGE_SIZE, IMAGE_SIZE)
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        return {"encoder_hidden_states": embeds,
                "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.repeat(len(captions), 1)}}


def pretrain_latent_t2i(cfg: LatentGeneratorConfig | None = None, out: str | Path | None = None,
                        base: str | Path = BASE_DIR, progress: bool = True, snapshots: tuple[int, ...] = ()) -> dict:
    """Train (or reuse) the VAE, then the UNet with the base tower(s) frozen; save the pipeline folder with
    `pretrain_info.json` (VAE and UNet runs, sampling settings chosen on validation prompts). `snapshots`: as
    `generator.pretrain_t2i`'s (the EMA pipeline also saved to `out/step_<n>` after n steps), so a training
    length is chosen on validation prompts from one run."""
    from diffusers import AutoencoderKL

    from .base_clip import world_tokenizer

    cfg = cfg or LatentGeneratorConfig()
    out = Path(out or (SD_DIR if cfg.kind == "sd" else SDXL_DIR))
    if cfg.vae:
        vae = AutoencoderKL.from_pretrained(cfg.vae).eval()
        saved = Path(cfg.vae) / "pretrain_info.json"  # the VAE's own run, when it was saved with one
        vae_info = {**(json.loads(saved.read_text()) if saved.is_file() else {}), "reused": str(cfg.vae)}
    else:
        # saved at once (the pipeline saves it again at the end): a VAE to check, or to reuse if the UNet's run stops
        vae, vae_info = pretrain_vae(VAEConfig(seed=cfg.seed, steps=cfg.vae_steps), out=out / "vae", progress=progress)
    vae.requires_grad_(False)
    tokenizer = world_tokenizer()
    text_encoder = base_text_encoder(base).requires_grad_(False)
    text_encoder_2 = None
    pooled_dim = None
    if cfg.kind == "sdxl":
        text_encoder_2 = base_text_encoder_with_projection(base).requires_grad_(False)
        pooled_dim = text_encoder_2.config.projection_dim
        cross = text_encoder.config.hidden_size + text_encoder_2.config.hidden_size
    else:
        cross = text_encoder.config.hidden_size
    unet = build_latent_unet(cfg, cross, pooled_dim, sample_size=IMAGE_SIZE // 2 ** (len(vae.config.block_out_channels) - 1),
                             vae_latents=vae.config.latent_channels)
    pipe = latent_pipeline(cfg.kind, unet, vae, latent_sampling_scheduler(cfg), tokenizer, text_encoder, text_encoder_2)
    scale = vae.config.scaling_factor

    def batch(images: list[np.ndarray], captions: list[str]) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            x0 = vae.encode(to_pixels(images)).latent_dist.mode() * scale
        return x0, pipeline_conditioning(pipe, cfg.kind, captions)

    def save(trained_unet, folder: Path) -> None:
        latent_pipeline(cfg.kind, trained_unet, vae, latent_sampling_scheduler(cfg), tokenizer, text_encoder,
                        text_encoder_2).save_pretrained(folder, safe_serialization=True)

    info = train_denoiser(cfg, unet, batch, save, out, progress=progress, snapshots=snapshots,
                          desc=f"pretrain world t2i ({cfg.kind})")
    info.update(vae=vae_info, text_encoder="base (frozen)" + (" in both slots" if cfg.kind == "sdxl" else ""),
                command=f"negenc testbed pretrain-t2i --kind {cfg.kind}")
    (out / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


__all__ = ["KINDS", "LatentGeneratorConfig", "SDXL_DIR", "SD_DIR", "VAEConfig", "build_latent_unet", "build_vae",
           "latent_pipeline", "pipeline_conditioning", "pretrain_latent_t2i", "pretrain_vae"]
