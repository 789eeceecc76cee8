"""Every GPU figure the docs lack, in one command on a lent GPU (under 8 minutes on an H100 80GB).

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [--out DIR] [--only l14,sd1,clipseg,generation]
                                                    [--budget-s 450] [--json PATH] [--smoke]

Nothing is downloaded: every model is built from its config with random weights (benchmarks/full_size.py
holds the configs), and the Hub is switched off for this process and its children. Each section runs in
its own child process under its own time limit (and all of them under `--budget-s`), so a crash or a hang
costs that section's figures only, and each starts with an empty GPU. Files under `--out`:

- `l14_fp32.json`, `l14_bf16.json`: train_throughput.py's ViT-L/14 architecture on the GPU (vision frozen;
  its `engine` configuration reads cached image embeddings and pads dynamically; the three others are its
  baselines), batch 256, float32 and bf16 autocast: samples/s and peak memory per configuration; the
  engine's text-tower model FLOPs/s (6 x parameters x real tokens) as `mfu_nominal` against the device's
  nominal dense peak in that precision (`NOMINAL_PEAKS`: NVIDIA's datasheet figures for the device names it
  knows; absent for others) and as `mfu_measured_gemm` against a square matmul measured here in that precision.
- `sd1.json`, `clipseg.json`: full_size.py --target sd1 / clipseg --device cuda --frozen-dtype bfloat16 at the
  recipe's batch of 64, 5 steps: step and setup time, peak memory, parameter counts, the epoch of 230k records.
- `generation.json`: the SD 1.x architecture (random weights) in fp16 with a swapped (random) ViT-L/14 text
  encoder, 512x512, 20 steps, batches of 8 prompts: images/s and s/image with the prompts as written
  (`plain_*`) and through the negative-prompt route, stacked on the swapped encoder
  (`integrations.negation_kwargs(..., keep_prompt=True)`: `route_*`), with the peak memory of each.
- `gpu_check.json`: the summary (one flat object, also printed): per section whether it wrote its figures
  (`<section>_ok`), its wall time and its headline figures. `<section>.log`: each child's output.

`--smoke`: every section at tiny size on the CPU in seconds (what CI runs; not a measurement).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, report  # noqa: E402

SECTIONS = ("l14", "sd1", "clipseg", "generation")
LIMITS_S = {"l14": 150, "sd1": 150, "clipseg": 75, "generation": 75}  # each child's limit (full size)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
# Dense (no 2:4 sparsity) peak FLOPs/s from NVIDIA's datasheets: (float32 on CUDA cores, bf16 on tensor cores).
# First match on the device name wins; an NVL part has other clocks and is left unknown.
NOMINAL_PEAKS = (
    ("NVL", None),
    ("H200", (67e12, 989e12)),  # H200 SXM: the H100 SXM's compute
    ("H100 PCIe", (51e12, 756e12)),
    ("H100", (67e12, 989e12)),  # "NVIDIA H100 80GB HBM3": the SXM5 part
    ("A100", (19.5e12, 312e12)),
)
GEN_PROMPTS = ("a street with no cars", "a kitchen with a table and no fork", "a dog on a couch without a hat",
               "a red bus parked next to a building without people", "a field with no trees",
               "a plate of food without a knife", "a man riding a bike with no helmet", "a park bench without people")


def nominal_peak(device_name: str, precision: str) -> float | None:
    """The device's nominal dense peak in `precision` (fp32 | bf16), or None for a device not in the table."""
    for key, peaks in NOMINAL_PEAKS:
        if key in device_name:
            return None if peaks is None else peaks[precision == "bf16"]
    return None


# ---------------------------------------------------------------------------------------------- sections (child)

def section_l14(out: Path, smoke: bool) -> None:
    from benchmarks import train_throughput

    arch = "tiny" if smoke else "l14"
    device = "cpu" if smoke else "cuda"
    for precision in ("fp32", "bf16"):
        path = out / f"l14_{precision}.json"
        size = ["--batch", "4", "--steps", "1", "--gemm-size", "256"] if smoke else \
            ["--batch", "256", "--steps", "5", "--gemm-size", "8192"]
        figures = train_throughput.main(["--archs", arch, *size, "--recipe-scenes", "0", "--device", device,
                                         "--precision", precision, "--json", str(path)])
        flops = figures[f"{arch}_engine_text_flops_per_s"]
        figures["mfu_measured_gemm"] = flops / figures["gemm_flops_per_s"]
        peak = nominal_peak(figures["device_name"], precision)
        if peak is not None:
            figures["nominal_peak_flops_per_s"] = peak
            figures["mfu_nominal"] = flops / peak
        report(figures, str(path))


def section_full_size(out: Path, smoke: bool, target: str) -> None:
    from benchmarks import full_size

    size = ["--smoke", "--device", "cpu"] if smoke else ["--device", "cuda", "--batch", "64", "--steps", "5"]
    full_size.main(["--target", target, *size, "--frozen-dtype", "bfloat16", "--json", str(out / f"{target}.json")])


def _sd_pipeline(smoke: bool, device: str):
    """An SD 1.x pipeline (random weights; fp16 on a GPU) whose text encoder is swapped for another."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from benchmarks import full_size
    from integrations import swap_text_encoders
    from negation_encoder.testing import tiny

    dtype = torch.float32 if smoke else torch.float16
    if smoke:
        parts = tiny.build_sd_components(seed=0)
        tok = parts["tokenizer"]
        encoder = tiny.build_clip_text_model(seed=1, tokenizer=tok)
    else:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        tok = full_size._tokenizer()
        text = full_size._text_config(tok, full_size.L14_TEXT, smoke=False)
        # SD 1.5's scheduler (PNDM, its config); the models are initialised on the GPU (much faster than the CPU)
        parts = {"tokenizer": tok, "safety_checker": None, "feature_extractor": None, "image_encoder": None,
                 "scheduler": PNDMScheduler(**full_size.SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False,
                                            steps_offset=1)}
        with torch.device(device):
            torch.manual_seed(0)
            parts.update(unet=UNet2DConditionModel(**full_size.SD15_UNET), vae=AutoencoderKL(**full_size.SD_VAE),
                         text_encoder=CLIPTextModel(CLIPTextConfig(**text)))
            torch.manual_seed(1)
            encoder = CLIPTextModel(CLIPTextConfig(**text))
    pipe = StableDiffusionPipeline(**parts, requires_safety_checker=False).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return swap_text_encoders(pipe, text_encoder=encoder)


def section_generation(out: Path, smoke: bool) -> None:
    import torch

    from integrations import negation_kwargs

    device = "cpu" if smoke else "cuda"
    size, steps, batch = (32, 2, 2) if smoke else (512, 20, 8)
    pipe = _sd_pipeline(smoke, device)
    prompts = list(GEN_PROMPTS[:batch])
    routes = {"plain": {"prompt": prompts}, "route": negation_kwargs(pipe, prompts, keep_prompt=True)}
    figures: dict = {"smoke": smoke, "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "dtype": str(pipe.unet.dtype).removeprefix("torch."), "size": size, "steps": steps, "batch": batch,
                     "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
                     "text_encoder_params": sum(p.numel() for p in pipe.text_encoder.parameters()),
                     "route_negative_prompts": sum(bool(n) for n in routes["route"].get("negative_prompt", []))}
    repeats = 1 if smoke else 2

    def call(kwargs: dict, n_steps: int) -> None:
        generator = [torch.Generator(device).manual_seed(i) for i in range(batch)]
        pipe(**kwargs, num_inference_steps=n_steps, height=size, width=size, generator=generator)

    for name, kwargs in routes.items():
        call(kwargs, 2)  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        begin = time.perf_counter()
        for _ in range(repeats):
            call(kwargs, steps)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - begin) / (repeats * batch)
        figures[f"{name}_s_per_image"] = seconds
        figures[f"{name}_images_per_s"] = 1 / seconds
        if device == "cuda":
            figures[f"{name}_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    figures["route_ratio"] = figures["route_images_per_s"] / figures["plain_images_per_s"]
    report(figures, str(out / "generation.json"))


def run_section(name: str, out: Path, smoke: bool) -> None:
    if name == "l14":
        section_l14(out, smoke)
    elif name == "generation":
        section_generation(out, smoke)
    else:
        section_full_size(out, smoke, name)


# ---------------------------------------------------------------------------------------------- orchestration

FILES = {"l14": ("l14_fp32.json", "l14_bf16.json"), "sd1": ("sd1.json",), "clipseg": ("clipseg.json",),
         "generation": ("generation.json",)}
HEADLINES = {
    "sd1.json": ("step_s", "setup_s", "peak_memory_mb", "epoch_h", "all_terms_logged"),
    "clipseg.json": ("step_s", "setup_s", "peak_memory_mb", "epoch_h", "all_terms_logged"),
    "generation.json": ("plain_images_per_s", "plain_s_per_image", "route_images_per_s", "route_s_per_image",
                        "route_ratio", "plain_peak_memory_mb", "route_peak_memory_mb"),
}


def _headlines(file: str, figures: dict) -> dict:
    """The summary's figures from one section file, prefixed with the file's name."""
    prefix = file.removesuffix(".json")
    if file.startswith("l14_"):
        arch = figures["archs"]
        keys = {"samples_per_s": f"{arch}_engine_samples_per_s", "peak_memory_mb": f"{arch}_engine_peak_memory_mb",
                "mfu_measured_gemm": "mfu_measured_gemm", "mfu_nominal": "mfu_nominal",
                "gemm_flops_per_s": "gemm_flops_per_s", "speedup": f"speedup_{arch}"}
    else:
        keys = {k: k for k in HEADLINES[file]}
    return {f"{prefix}_{k}": figures[v] for k, v in keys.items() if v in figures}


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--out", default=None, help="folder the section files and the summary are written to "
                    "(default: gpu_out, or the folder of --json)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma list of sections to run")
    ap.add_argument("--budget-s", type=float, default=450, help="all sections together stop after this")
    ap.add_argument("--section", default=None, help="internal: run this one section in this process")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.json).parent if args.json else Path("gpu_out")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(OFFLINE)
    if args.section:
        run_section(args.section, out, args.smoke)
        return {}
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
    start = time.perf_counter()
    summary: dict = {"smoke": args.smoke, "sections": ",".join(sections)}
    for name in sections:
        left = args.budget_s - (time.perf_counter() - start)
        limit = min(LIMITS_S[name] * (4 if args.smoke else 1), left)
        for file in FILES[name]:
            (out / file).unlink(missing_ok=True)  # a figure left from an earlier run is not this run's
        begin = time.perf_counter()
        status = "not started: the budget is spent"
        if limit > 0:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--out", str(out),
                   *(["--smoke"] if args.smoke else [])]
            with open(out / f"{name}.log", "w") as log:
                try:
                    rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit,
                                        env={**os.environ, **OFFLINE}).returncode
                    status = "ok" if rc == 0 else f"exit {rc} (see {name}.log)"
                except subprocess.TimeoutExpired:
                    status = f"stopped after {limit:.0f} s (see {name}.log)"
        summary[f"{name}_s"] = time.perf_counter() - begin
        found = [f for f in FILES[name] if (out / f).exists()]
        summary[f"{name}_ok"] = status == "ok" and len(found) == len(FILES[name])
        if not summary[f"{name}_ok"]:
            summary[f"{name}_status"] = status
        for file in found:
            summary.update(_headlines(file, json.loads((out / file).read_text())))
    summary["total_s"] = time.perf_counter() - start
    summary = {k: v for k, v in summary.items() if not (isinstance(v, float) and not math.isfinite(v))}
    return report(summary, args.json or str(out / "gpu_check.json"))


if __name__ == "__main__":
    main()
