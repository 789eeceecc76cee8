"""Training throughput: cached image embeddings + dynamic padding vs the papers' way of training.

    python benchmarks/train_throughput.py [--json PATH] [--batch 32] [--steps 2] [--archs b32,l14]

Real ViT-B/32 and ViT-L/14 CLIP architectures (random init from their configs; nothing downloaded),
images as 224x224 PNG files read through the model's image processor, COCO-like caption lengths.
The baseline recomputes the frozen vision tower every step (decode + preprocess + forward) and pads
every caption to 77 tokens; our engine reads cached embeddings and pads to the longest caption.
Everything runs in one process; ratios compare configurations measured here, one after another.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from negation_encoder.offline import build_clip_tokenizer  # noqa: E402
from negation_encoder.training.losses import ClipInfoNCE  # noqa: E402

ARCHS = {
    "b32": dict(text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12),
                vision=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                            patch_size=32, image_size=224), projection_dim=512),
    "l14": dict(text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
                vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                            patch_size=14, image_size=224), projection_dim=768),
}
WORDS = ("a man woman dog cat riding sitting on the street with no cars near red bus parked next to an empty "
         "table plate of food and fork knife cup without people standing in front building tree sky").split()


def _captions(n: int, rng: np.random.Generator) -> list[str]:
    """COCO caption lengths: about 10.5 words, between 8 and 16."""
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(8, 17)))) for _ in range(n)]


def _model(arch: str, vocab: int, eos: int, bos: int):
    from transformers import CLIPConfig, CLIPModel

    a = ARCHS[arch]
    text = dict(a["text"], vocab_size=vocab, max_position_embeddings=77, eos_token_id=eos, bos_token_id=bos,
                pad_token_id=eos, projection_dim=a["projection_dim"])
    torch.manual_seed(0)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=a["vision"], projection_dim=a["projection_dim"]))


def _step(model, opt, loss_fn, image_emb, ids, mask) -> None:
    text = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    ids_ = torch.arange(len(ids))
    loss = loss_fn(image_emb, F.normalize(text, dim=-1), model.logit_scale.exp().detach(), ids_, ids_)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def _peak_memory_mb(reset: bool = False) -> float:
    """CUDA: peak allocated tensor memory (reset per configuration). CPU: the process's resident-set
    high-water mark (VmHWM), which never decreases, so read the per-configuration growth next to it."""
    if torch.cuda.is_available():
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: the same high-water mark from getrusage

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def run_arch(arch: str, batch: int, steps: int, root: Path) -> dict:
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    tok = build_clip_tokenizer(WORDS)
    model = _model(arch, len(tok), tok.eos_token_id, tok.bos_token_id)
    model.vision_model.requires_grad_(False)
    model.visual_projection.requires_grad_(False)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    paths = []
    for i in range(batch):
        p = root / f"{arch}-{i}.png"
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    captions = _captions(batch, rng)
    dyn = tok(captions, padding="longest", return_tensors="pt")
    full = tok(captions, padding="max_length", max_length=77, return_tensors="pt")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    loss_fn = ClipInfoNCE()

    def vision():
        images = [Image.open(p).convert("RGB") for p in paths]
        pix = processor(images=images, return_tensors="pt").pixel_values
        with torch.no_grad():
            return F.normalize(model.get_image_features(pixel_values=pix).pooler_output, dim=-1)

    cache_start = time.perf_counter()
    cached = vision()
    cache_seconds = time.perf_counter() - cache_start
    configs = {
        "baseline": lambda: _step(model, opt, loss_fn, vision(), full.input_ids, full.attention_mask),
        "cache_only": lambda: _step(model, opt, loss_fn, cached, full.input_ids, full.attention_mask),
        "dynamic_only": lambda: _step(model, opt, loss_fn, vision(), dyn.input_ids, dyn.attention_mask),
        "engine": lambda: _step(model, opt, loss_fn, cached, dyn.input_ids, dyn.attention_mask),
    }
    out: dict = {}
    for name, fn in configs.items():
        before = _peak_memory_mb(reset=True)
        sec = _time(fn, steps)
        out[f"{arch}_{name}_samples_per_s"] = batch / sec
        out[f"{arch}_{name}_peak_memory_mb"] = _peak_memory_mb()
        out[f"{arch}_{name}_peak_memory_growth_mb"] = out[f"{arch}_{name}_peak_memory_mb"] - before
    text_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("text_model.", "text_projection")))
    tokens = int(dyn.attention_mask.sum())
    flops = 6 * text_params * tokens  # forward + backward of the text tower on the real tokens
    out[f"{arch}_engine_text_flops_per_s"] = flops * out[f"{arch}_engine_samples_per_s"] / batch
    out[f"{arch}_cache_build_s_per_image"] = cache_seconds / batch
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--archs", default="b32,l14")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    results: dict = {"batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads()}
    results["gemm_flops_per_s"] = gemm_flops()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            results.update(run_arch(arch, args.batch, args.steps, Path(tmp)))
    for arch in args.archs.split(","):
        base = results[f"{arch}_baseline_samples_per_s"]
        results[f"speedup_{arch}"] = results[f"{arch}_engine_samples_per_s"] / base
        results[f"cache_ratio_{arch}"] = results[f"{arch}_cache_only_samples_per_s"] / base
        results[f"dynamic_padding_ratio_{arch}"] = results[f"{arch}_dynamic_only_samples_per_s"] / base
    first = args.archs.split(",")[0]
    results["dynamic_padding_ratio"] = (results[f"{first}_engine_samples_per_s"]
                                        / results[f"{first}_cache_only_samples_per_s"])
    results["gemm_utilization"] = max(results[f"{a}_engine_text_flops_per_s"] for a in args.archs.split(",")) \
        / results["gemm_flops_per_s"]
    print(f"{'metric':40s} value")
    for k, v in results.items():
        print(f"{k:40s} {v:.3f}" if isinstance(v, float) else f"{k:40s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
