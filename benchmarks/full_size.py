"""A full-size dry run of the drop-in recipe: the real architectures (random weights), the real trainer.

    python benchmarks/full_size.py --target sd1|sdxl|clipseg [--device cpu|cuda]
                                   [--frozen-dtype float32|bfloat16|float16] [--mixed-precision no|bf16|fp16]
                                   [--batch 64] [--steps 3] [--records 230000] [--workdir DIR] [--json PATH] [--smoke]

Why: the testbed trains a tiny world; before a GPU is rented for a real run, this says whether the drop-in
recipe's step fits at the sizes the papers use, what it costs, and what an epoch of their data would take.
Every architecture is built from its published config with random weights (nothing is downloaded):

Each target runs its starter (`negenc train --print-config TARGET`: the terms the testbed found to transfer,
the pipeline's reading) with every term it lists:

- sd1: the base is CLIP ViT-L/14 (SD 1.x's text encoder; its vision tower builds the image cache), the sd1
  starter's terms (infonce, mcq, distractor, preserve, preserve_embeds, omit_states, preserve_states, read as
  SD 1.x reads: last_hidden_state, 77 positions, unmasked) plus unet_loss (teacher mode) through the SD 1.5
  UNet and VAE at 64x64 latents (512x512 images).
- clipseg: the base is CLIP ViT-B/16 (CLIPSeg rd64's), the clipseg starter's terms on the pooled embedding
  (infonce, mcq, distractor, preserve_embeds) and seg_loss through CLIPSeg rd64-refined at 352x352.
- sdxl: the base is CLIP ViT-L/14 (SDXL's first tower) with the sdxl starter's terms (its states read at the
  penultimate layer), no unet_loss: SDXL's UNet reads both towers' states side by side (2048 wide) and the
  second tower's pooled projection, which a term training one tower's states does not feed. The second tower
  (OpenCLIP bigG text: 1280 wide, 32 layers, projection 1280) is built, counted, and timed reading a batch of
  the records' prompts, frozen.

The unet_loss and seg_loss batches keep their defaults' ratio to a batch of 64 (16 and 32: `--batch`/4 and
`--batch`/2, at least 1).

A child process builds the models and the data into the work folder (the base CLIPModel with its tokenizer
and image processor; for sd1 a diffusers folder with unet/, vae/ and scheduler/; for clipseg a CLIPSeg folder;
synthetic NegationRecords, `--batch` x `--steps` of them so that every step reads new records as in a first
epoch, with images, negations of each type the terms read and counterfactual images; referring records with
masks), so the CPU high-water mark below is the trainer's alone. This process then runs
`checks.check_inputs` + `setup.setup` (timed: loading, the image cache, each term's prepare) and `--steps`
calls of `step.train_step`, each timed (CUDA synchronised).

Figures: `setup_s`, `first_step_s` (one-off warm-up included), `step_s` (the mean of the steps after the
first, or the one step), `samples_per_s`; `peak_memory_mb` (CUDA: max_memory_allocated over setup and steps;
CPU: the resident high-water mark, VmHWM), `step_peak_memory_mb` (the same, counted from the first step),
`peak_memory_growth_mb` (CPU: the high-water mark less the resident set before setup; CUDA: the same as
the peak); parameter counts (`base_params`, `trainable_params`, `frozen_params`, and per frozen model:
`base_text_params`, `unet_params`, `vae_params`, `clipseg_params`, `tower2_params`); the step log
(`terms`, `logged_terms`, `all_terms_logged`: every enabled term has a value in every step,
`losses_finite`, `loss_first`, `loss_last`); and the extrapolation to `--records` records (default 230k,
NegationCLIP's P1 + P2 data): `epoch_steps` = ceil(records / batch), `epoch_s` = epoch_steps x step_s,
`epoch_h`, and `s_per_record`. At the recipe's batch (64, the default) that is the paper-sized epoch; at
a smaller `--batch` it assumes the cost grows with the batch (an upper bound on a GPU, which batches better).
`--smoke`: tiny widths, a few seconds on a CPU (a check that the script runs, not a measurement).
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, peak_rss_mb, report, reset_peak_rss, rss_mb  # noqa: E402

TARGETS = ("sd1", "sdxl", "clipseg")
CLIP_VOCAB = 49408  # CLIP's BPE vocabulary: the embedding tables have their real size
RECIPE_BATCH = 64  # the batch unet_loss's and seg_loss's default batches (16 and 32) are sized against

# CLIP text towers (transformers CLIPTextConfig keys) and vision towers (CLIPVisionConfig keys)
L14_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
L14_VISION = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24, patch_size=14,
                  image_size=224)
B16_TEXT = dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12)
B16_VISION = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, patch_size=16,
                  image_size=224)
BIGG_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, hidden_act="gelu",
                 projection_dim=1280)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, patch_size=8,
                   image_size=32)

# SD 1.5's UNet (unet/config.json) and VAE (vae/config.json); sample_size 64: 512x512 images, 64x64 latents
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu",
                 downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, norm_eps=1e-5)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215)
SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
# --smoke: the same block types at tiny widths (the VAE still downsamples 8x: 64x64 images, 8x8 latents)
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(4, 4, 4, 4),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                norm_num_groups=2, sample_size=64, scaling_factor=0.18215)

# CLIPSeg rd64-refined: CLIP ViT-B/16 with a 64-wide decoder reading vision layers 3, 6, 9, its transposed
# convolution in two steps ("refined"), 352x352 inputs with ImageNet statistics
CLIPSEG = dict(extract_layers=(3, 6, 9), reduce_dim=64, decoder_num_attention_heads=4, decoder_intermediate_size=2048,
               conditional_layer=0, use_complex_transposed_convolution=True)
CLIPSEG_SIZE = 352
TINY_CLIPSEG = dict(extract_layers=(1, 2), reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                    conditional_layer=0, use_complex_transposed_convolution=True)
# the refined decoder upsamples by patch_size in two steps of patch_size/4: a patch of 16 keeps masks at input size
TINY_CLIPSEG_VISION = dict(hidden_size=40, intermediate_size=80, num_attention_heads=4, num_hidden_layers=3, patch_size=16,
                           image_size=32)

SUBJECTS = "man woman dog cat bus car horse bird table chair cup plate tree boat train bike".split()
PLACES = ("on a street", "in a kitchen", "near a building", "in a field", "on a wooden table", "by the water",
          "in a park")
ACTIONS = ("sitting", "standing", "parked", "waiting", "resting", "shown")
COLORS = "red blue green yellow black white brown".split()


def _words() -> list[str]:
    from negation_encoder.offline import DEFAULT_WORDS

    text = " ".join([*SUBJECTS, *PLACES, *ACTIONS, *COLORS, "a the with no is not next to photo that"])
    return sorted(set(text.split()) | set(DEFAULT_WORDS))


# ---------------------------------------------------------------------------------------------- build (child)

def _tokenizer():
    from negation_encoder.offline import build_clip_tokenizer

    return build_clip_tokenizer(_words())


def _text_config(tok, arch: dict, smoke: bool, projection_dim: int | None = None) -> dict:
    return dict(arch, vocab_size=len(tok) if smoke else max(CLIP_VOCAB, len(tok)), max_position_embeddings=77,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                **({"projection_dim": projection_dim} if projection_dim else {}))


def _clip_model(tok, target: str, smoke: bool):
    from transformers import CLIPConfig, CLIPModel

    if smoke:
        text, vision, proj = TINY_TEXT, TINY_VISION, 24
    elif target == "clipseg":
        text, vision, proj = B16_TEXT, B16_VISION, 512
    else:
        text, vision, proj = L14_TEXT, L14_VISION, 768
    torch.manual_seed(0)
    return CLIPModel(CLIPConfig(text_config=_text_config(tok, text, smoke, proj), vision_config=vision,
                                projection_dim=proj))


def _image(rng: np.random.Generator, size: int):
    """A smooth random picture (cheap to write and to decode, unlike noise)."""
    from PIL import Image

    small = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    return small.resize((size, size), Image.BICUBIC)


def _records(n: int, rng: np.random.Generator) -> list:
    """`n` records, image i for record i: 5 in 8 P1-like absences (foils, a counterfactual image), 2 in 8
    P2-like attribute negations, 1 in 8 presence records (a false negated caption)."""
    from negation_encoder.data import NegationRecord

    out = []
    for i in range(n):
        a, b = rng.choice(SUBJECTS, size=2, replace=False)
        place, action = PLACES[rng.integers(len(PLACES))], ACTIONS[rng.integers(len(ACTIONS))]
        color, other = rng.choice(COLORS, size=2, replace=False)
        kind = i % 8
        if kind < 5:
            rec = NegationRecord(
                id=f"p1-{i}", image=f"{i}.jpg", caption=f"a {color} {a} {action} {place}",
                negated_caption=f"a {color} {a} {action} {place} with no {b}", negation_type="absence",
                negated_concept=str(b), source="p1",
                hard_negatives=[f"a {color} {a} {action} {place} with a {b}", f"a {b} {action} {place} with no {a}"],
                distractor_images=[f"{(i + 1) % n}.jpg"])
        elif kind < 7:
            rec = NegationRecord(
                id=f"p2-{i}", image=f"{i}.jpg", caption=f"a {color} {a} {place}",
                negated_caption=f"the {a} {place} is not {other}", negation_type="attribute", negated_concept=str(other),
                source="p2", hard_negatives=[f"the {a} {place} is not {color}"], distractor_images=[f"{(i + 1) % n}.jpg"])
        else:
            rec = NegationRecord(
                id=f"pr-{i}", image=f"{i}.jpg", caption=f"a {color} {a} {place}",
                negated_caption=f"a photo {place} with no {a}", negation_type="presence", negated_concept=str(a),
                source="presence")
        out.append(rec)
    return out


def _referring(root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """`n` ReferringRecords with masks (two in three name the object a negated text excludes)."""
    from PIL import Image

    from negation_encoder.data.referring import ReferringRecord, write_referring

    root.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        _image(rng, size).save(root / f"i{i}.jpg", quality=90)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 8: size // 2, size // 10: size // 2] = 255
        Image.fromarray(mask).save(root / f"m{i}.png")
        other = None
        if i % 3:
            o = np.zeros((size, size), np.uint8)
            o[size // 2:, size // 2:] = 255
            Image.fromarray(o).save(root / f"o{i}.png")
            other = f"o{i}.png"
        recs.append(ReferringRecord(f"r{i}", f"i{i}.jpg", "the cup that is not red" if i % 2 else "the red cup",
                                    f"m{i}.png", other_mask=other, negated=bool(i % 2)))
    write_referring(root / "refs.jsonl", recs)
    return root / "refs.jsonl"


def build(work: Path, target: str, smoke: bool, batch: int, steps: int, device: str) -> dict:
    """The models and the data of `target` under `work`; returns what `built.json` records."""
    from transformers import CLIPImageProcessor

    from negation_encoder.data import write_records

    init = torch.device(device)  # random init where the run goes (much faster on a GPU), saved from the CPU
    tok = _tokenizer()
    rng = np.random.default_rng(0)
    with init:
        model = _clip_model(tok, target, smoke)
    model.to("cpu").save_pretrained(work / "base")
    tok.save_pretrained(work / "base")
    size = 32 if smoke else 224
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(work / "base")
    del model
    n = max(8, batch * steps)
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    image_size = 64 if smoke else 512
    for i in range(n):
        _image(rng, image_size).save(images / f"{i}.jpg", quality=90)
    write_records(work / "records.jsonl", _records(n, rng))
    spec = {"target": target, "smoke": smoke, "batch": batch, "steps": steps, "records": n}
    if target == "sd1":
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        with init:
            torch.manual_seed(0)
            unet = UNet2DConditionModel(**(TINY_UNET if smoke else SD15_UNET))
        unet.to("cpu").save_pretrained(work / "pipeline" / "unet")
        del unet
        with init:
            torch.manual_seed(0)
            vae = AutoencoderKL(**(TINY_VAE if smoke else SD_VAE))
        vae.to("cpu").save_pretrained(work / "pipeline" / "vae")
        del vae
        DDPMScheduler(**SD_BETAS, clip_sample=False, prediction_type="epsilon").save_pretrained(
            work / "pipeline" / "scheduler")
    elif target == "clipseg":
        from transformers import (
            CLIPSegConfig,
            CLIPSegForImageSegmentation,
            CLIPSegProcessor,
            ViTImageProcessor,
        )

        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")
        text = {k: v for k, v in _text_config(tok, TINY_TEXT if smoke else B16_TEXT, smoke).items() if k in keys}
        config = CLIPSegConfig(text_config=text, vision_config=TINY_CLIPSEG_VISION if smoke else B16_VISION,
                               projection_dim=24 if smoke else 512, **(TINY_CLIPSEG if smoke else CLIPSEG))
        with init:
            torch.manual_seed(0)
            seg = CLIPSegForImageSegmentation(config)
        seg.to("cpu").save_pretrained(work / "clipseg")
        del seg
        seg_size = 32 if smoke else CLIPSEG_SIZE
        CLIPSegProcessor(image_processor=ViTImageProcessor(
            size={"height": seg_size, "width": seg_size}, image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225], resample=2), tokenizer=tok).save_pretrained(work / "clipseg")
        spec["referring_records"] = max(4, _seg_batch(batch) * steps)
        _referring(work / "refs", spec["referring_records"], seg_size, rng)
    elif target == "sdxl":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        arch = dict(TINY_TEXT, hidden_size=48, projection_dim=48) if smoke else BIGG_TEXT
        with init:
            torch.manual_seed(1)
            tower2 = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(tok, arch, smoke)))
        tower2.to("cpu").save_pretrained(work / "text_encoder_2")
    (work / "built.json").write_text(json.dumps(spec) + "\n")
    return spec


# ---------------------------------------------------------------------------------------------- the run

def _unet_batch(batch: int) -> int:
    return max(1, batch * 16 // RECIPE_BATCH)


def _seg_batch(batch: int) -> int:
    return max(1, batch * 32 // RECIPE_BATCH)


def train_config(work: Path, target: str, batch: int, steps: int, frozen_dtype: str, mixed_precision: str):
    """The target's starter (`negenc train --print-config TARGET`: its terms and its pipeline's reading) on the
    built folders, at `batch` x `steps`; sd1 adds unet_loss through the built SD 1.5 UNet (module docstring)."""
    from negation_encoder.training.starters import starter_config

    cfg = starter_config(target)
    settings: dict = {
        "model.base": str(work / "base"), "data.files": [str(work / "records.jsonl")],
        "data.images": str(work / "images"), "data.cache_dir": str(work / "cache"),
        "optim.steps": steps, "optim.batch_size": batch, "optim.warmup_steps": 0,
        "optim.frozen_dtype": frozen_dtype, "optim.mixed_precision": mixed_precision,
        "run.out": str(work / "run"), "run.log_every": 1, "run.save_every": steps,
    }
    if target == "clipseg":
        settings.update({"objective.seg_loss.model": str(work / "clipseg"),
                         "objective.seg_loss.data": [str(work / "refs" / "refs.jsonl")],
                         "objective.seg_loss.batch_size": _seg_batch(batch)})
    if target == "sd1":
        settings.update({"objective.unet_loss.weight": 1.0, "objective.unet_loss.model": str(work / "pipeline"),
                         "objective.unet_loss.mode": "teacher", "objective.unet_loss.batch_size": _unet_batch(batch)})
    return cfg.override(settings, source=f"full_size {target}")


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


class _Memory:
    """Peak memory of the device the run is on (module docstring: what each figure counts)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.start = rss_mb()
        self.reset()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()

    def peak(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(work: Path, target: str, batch: int, steps: int, frozen_dtype: str, mixed_precision: str, device: str) -> dict:
    from accelerate import Accelerator

    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import train_step

    for stale in ("run", "cache"):  # every run builds its image cache and starts a fresh run folder
        shutil.rmtree(work / stale, ignore_errors=True)
    cfg = train_config(work, target, batch, steps, frozen_dtype, mixed_precision)
    acc = Accelerator(mixed_precision=mixed_precision, step_scheduler_with_optimizer=False, cpu=device == "cpu")
    run_dir = RunDir(cfg.run.out)
    memory = _Memory(acc.device)
    start = time.perf_counter()
    inputs = check_inputs(cfg, acc, run_dir, False, False, None)
    state = setup(cfg, inputs, acc, run_dir, ImageEmbeddingCache(cfg.data.cache_dir), progress=False)
    _sync(acc.device)
    out: dict = {"setup_s": time.perf_counter() - start}
    setup_peak = memory.peak()
    memory.reset()
    times, logs = [], []
    for step in range(steps):
        begin = time.perf_counter()
        logs.append(train_step(state, step))
        _sync(acc.device)
        times.append(time.perf_counter() - begin)
    step_peak = memory.peak()
    out["first_step_s"] = times[0]
    out["step_s"] = float(np.mean(times[1:] if len(times) > 1 else times))
    out["samples_per_s"] = batch / out["step_s"]
    out["peak_memory_mb"] = max(setup_peak, step_peak)
    out["step_peak_memory_mb"] = step_peak
    out["peak_memory_growth_mb"] = out["peak_memory_mb"] - (0.0 if memory.cuda else memory.start)
    enabled = cfg.enabled_terms()
    logged = sorted(set.intersection(*(set(e) for e in logs)) - {"loss"})
    out.update(terms=",".join(enabled), logged_terms=",".join(k for k in enabled if k in logged),
               all_terms_logged=set(enabled) <= set(logged),
               losses_finite=all(math.isfinite(v) for e in logs for v in e.values()),
               loss_first=logs[0]["loss"], loss_last=logs[-1]["loss"], examples=len(state.examples),
               images=len(inputs.keys))
    terms = state.objective.terms
    text = state.model.text_model
    out["base_params"] = _count(state.model)
    out["text_tower_params"] = _count(text) + _count(state.model.text_projection)
    out["trainable_params"] = sum(p.numel() for p in state.params)
    frozen = {"base_text_params": _count(state.base_text) if state.base_text is not None else 0}
    if "unet_loss" in terms:
        den = terms["unet_loss"].denoiser
        frozen.update(unet_params=_count(den.unet), vae_params=_count(den.vae) if den.vae is not None else 0)
        out["unet_batch"] = terms["unet_loss"].config.batch_size
    if "seg_loss" in terms:
        frozen["clipseg_params"] = _count(terms["seg_loss"].segmenter.model)
        out["seg_batch"] = terms["seg_loss"].config.batch_size
        out["referring_records"] = len(terms["seg_loss"].segmenter.records)
    out.update(frozen, frozen_params=sum(frozen.values()))
    if target == "sdxl":
        out.update(_tower2(work, state, acc.device, frozen_dtype))
    return out


def _tower2(work: Path, state, device: torch.device, frozen_dtype: str) -> dict:
    """SDXL's second tower, frozen, reading a batch of the records' prompts padded to 77 as the pipeline pads them."""
    from transformers import CLIPTextModelWithProjection

    tower = CLIPTextModelWithProjection.from_pretrained(work / "text_encoder_2").to(device, getattr(torch, frozen_dtype))
    tower.eval().requires_grad_(False)
    prompts = [ex.positive for ex in state.examples[: state.cfg.optim.batch_size]]
    tok = state.table.tokenizer
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        tower(input_ids=ids)
        _sync(device)
        begin = time.perf_counter()
        tower(input_ids=ids)
        _sync(device)
    return {"tower2_params": _count(tower), "tower2_forward_s": time.perf_counter() - begin}


def _build_in_child(work: Path, args) -> float:
    """Build in a child process (the high-water mark of this one then counts the trainer alone); its seconds."""
    built = work / "built.json"
    want = {"target": args.target, "smoke": args.smoke, "batch": args.batch, "steps": args.steps}
    if built.exists() and all(json.loads(built.read_text()).get(k) == v for k, v in want.items()):
        return 0.0  # --workdir holds this build already
    begin = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build-into", str(work), "--target", args.target,
           "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device,
           *(["--smoke"] if args.smoke else [])]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - begin


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--target", choices=TARGETS, default="sd1")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frozen-dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="optim.frozen_dtype: what the frozen models run in")
    ap.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                    help="optim.mixed_precision: autocast of the trained tower's step")
    ap.add_argument("--batch", type=int, default=RECIPE_BATCH, help="global batch (the recipe's: 64)")
    ap.add_argument("--steps", type=int, default=3, help="steps timed (the first one is reported apart)")
    ap.add_argument("--records", type=int, default=230_000, help="data size the epoch is extrapolated to "
                    "(NegationCLIP's P1 + P2: about 230k records)")
    ap.add_argument("--workdir", default=None, help="keep the built models and data here (reused when they match)")
    ap.add_argument("--build-into", default=None, help="internal: build into this folder and exit")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.steps = 4, 2
    if args.build_into:
        return build(Path(args.build_into), args.target, args.smoke, args.batch, args.steps, args.device)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"
    results: dict = {"smoke": args.smoke, "target": args.target, "device": args.device, "device_name": device_name,
                     "threads": torch.get_num_threads(), "frozen_dtype": args.frozen_dtype,
                     "mixed_precision": args.mixed_precision, "batch": args.batch, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results["build_s"] = _build_in_child(work, args)
        results.update(run(work, args.target, args.batch, args.steps, args.frozen_dtype, args.mixed_precision,
                           args.device))
    results["records"] = args.records
    results["epoch_steps"] = math.ceil(args.records / args.batch)
    results["epoch_s"] = results["epoch_steps"] * results["step_s"]
    results["epoch_h"] = results["epoch_s"] / 3600
    results["s_per_record"] = results["step_s"] / args.batch
    return report(results, args.json)


if __name__ == "__main__":
    main()
