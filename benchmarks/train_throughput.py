"""Training throughput: cached image embeddings + dynamic padding vs the papers' way of training.

    python benchmarks/train_throughput.py [--json PATH] [--batch 32] [--steps 2] [--archs b32,l14]
                                          [--recipe-scenes 6000] [--recipe-steps 10] [--device cpu|cuda]
                                          [--precision fp32|bf16] [--gemm-size 2048] [--smoke]

Real ViT-B/32 and ViT-L/14 CLIP architectures (random init from their configs; nothing downloaded),
images as 224x224 PNG files read through the model's image processor, COCO-like caption lengths.
The baseline recomputes the frozen vision tower every step (decode + preprocess + forward) and pads
every caption to 77 tokens; our engine reads cached embeddings and pads to the longest caption.
Every configuration runs the engine's own step: the trainer's `TextTower`, a `collate`d `Batch`
carrying its image embeddings, and `NegationObjective` with the registered InfoNCE term, so the benchmark
breaks loudly when their interfaces change. Before anything is timed, the four configurations compute their
loss on the same weights: padding to 77 and recomputing the vision tower must not change it, so
`<arch>_same_loss` is true when they agree (`<arch>_loss_max_abs_diff`), or the ratios compare
different work. Everything runs in one process; ratios compare configurations measured here, one
after another. `--smoke` runs a tiny architecture in a few seconds (a check that
the script works, not a measurement).

`--device cuda` runs the architectures' part on the GPU (images are still decoded and preprocessed on the
CPU, as a data loader would); `--precision bf16` times each training step under bf16 autocast (the loss
comparison stays in float32). `gemm_flops_per_s` is a square matmul of `--gemm-size` on that device in that
precision, and `gemm_utilization` the engine's text-tower model FLOPs/s (6 x parameters x real tokens;
the cached vision tower costs nothing) against it. benchmarks/gpu_check.py adds the utilisation against the
device's nominal peak.

The second part times the demo's default recipe step on the world (`--recipe-scenes` scenes of data made
by the testbed's pipelines, the committed base, CLIPSeg and referring records): the trainer's step by its
reference route (one padded batch per view, the frozen base and CLIPSeg recomputed every step) against
its fast route (length buckets, one tower call, frozen outputs cached), after checking on a fixed batch
that both give the same loss (<= 1e-5 relative) and the same gradients; each route's setup time is
reported too (the fast route computes the frozen outputs there, once).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, report  # noqa: E402
from negation_encoder.offline import build_clip_tokenizer  # noqa: E402
from negation_encoder.training.batching import Batch, Example, TokenTable, collate  # noqa: E402
from negation_encoder.training.checks import build_terms  # noqa: E402
from negation_encoder.training.config import TrainConfig  # noqa: E402
from negation_encoder.training.objective import NegationObjective  # noqa: E402
from negation_encoder.training.terms import StepInfo, StepOutputs  # noqa: E402
from negation_encoder.training.tower import TextTower  # noqa: E402

ARCHS = {
    "b32": dict(text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12),
                vision=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                            patch_size=32, image_size=224), projection_dim=512),
    "l14": dict(text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
                vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                            patch_size=14, image_size=224), projection_dim=768),
    # --smoke: a tiny model on 32x32 images, seconds on a CPU
    "tiny": dict(text=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2),
                 vision=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                             patch_size=8, image_size=32), projection_dim=24),
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


def _loss(tower, objective, batch: Batch) -> torch.Tensor:
    """The engine's loss on one batch: text tower forward, the objective read from the batch."""
    (texts,) = tower([(batch.input_ids, batch.attention_mask, -1, True)])
    plans = objective.plan(batch, StepInfo(0, 0))
    return objective(StepOutputs(texts, {}, tower.logit_scale.exp().detach()), batch, plans)[0]


def _step(tower, opt, objective, batch: Batch, precision: str = "fp32") -> None:
    """One engine step: `_loss` (under bf16 autocast with `precision` bf16), backward, AdamW."""
    device = batch.input_ids.device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = _loss(tower, objective, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _batches(captions: list[str], tok, terms) -> tuple[Batch, Batch]:
    """(dynamically padded, padded to 77) batches of one example per caption, image i for caption i (the
    image embeddings are set per configuration)."""
    examples = [Example(image=i, positive=c, original=c, foils=(), negated_caption=c, negation_type="absence",
                        source="benchmark", eligible=frozenset(t.name for t in terms)) for i, c in enumerate(captions)]
    dyn = collate(examples, TokenTable(tok, captions), torch.zeros(len(captions), 1), 1, range(len(examples)), terms)
    texts = list(dict.fromkeys(captions))  # collate's row order: each distinct text where it first appears
    full = tok(texts, padding="max_length", max_length=77, return_tensors="pt")
    return dyn, dataclasses.replace(dyn, input_ids=full.input_ids, attention_mask=full.attention_mask)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, steps: int, device: str = "cpu") -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _peak_memory_mb(reset: bool = False, device: str = "cpu") -> float:
    """CUDA: peak allocated tensor memory (reset per configuration). CPU: the process's resident-set
    high-water mark (VmHWM), which never decreases, so read the per-configuration growth next to it."""
    if device == "cuda":
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: the same high-water mark from getrusage

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_flops(n: int = 2048, repeats: int = 5, device: str = "cpu", precision: str = "fp32") -> float:
    """FLOPs/s of an n x n matmul on `device` in `precision` (the peak this machine shows for dense work)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def run_arch(arch: str, batch: int, steps: int, root: Path, device: str = "cpu", precision: str = "fp32") -> dict:
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    tok = build_clip_tokenizer(WORDS)
    model = _model(arch, len(tok), tok.eos_token_id, tok.bos_token_id).to(device)
    model.vision_model.requires_grad_(False)
    model.visual_projection.requires_grad_(False)
    size = ARCHS[arch]["vision"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    paths = []
    for i in range(batch):
        p = root / f"{arch}-{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    captions = _captions(batch, rng)
    terms = build_terms(TrainConfig.from_dict({"objective": {"infonce": 1.0}}))
    dyn, full = (b.to(device) for b in _batches(captions, tok, terms))
    tower = TextTower(model.text_model, model.text_projection, model.logit_scale, learn_logit_scale=False).train()
    opt = torch.optim.AdamW([p for p in tower.parameters() if p.requires_grad], lr=1e-6)
    objective = NegationObjective(terms)

    def vision():
        images = [Image.open(p).convert("RGB") for p in paths]
        pix = processor(images=images, return_tensors="pt").pixel_values.to(device)
        with torch.no_grad():
            return F.normalize(model.get_image_features(pixel_values=pix).pooler_output, dim=-1)

    cache_start = time.perf_counter()
    cached = vision()
    _sync(device)
    cache_seconds = time.perf_counter() - cache_start

    def step(b: Batch, image_emb) -> None:
        _step(tower, opt, objective, dataclasses.replace(b, image_emb=image_emb), precision)

    def loss(b: Batch, image_emb) -> float:
        with torch.no_grad():
            return float(_loss(tower, objective, dataclasses.replace(b, image_emb=image_emb)))

    inputs = {"baseline": (full, vision), "cache_only": (full, lambda: cached), "dynamic_only": (dyn, vision),
              "engine": (dyn, lambda: cached)}
    losses = [loss(b, images()) for b, images in inputs.values()]  # before any step: the same weights
    out: dict = {f"{arch}_loss_max_abs_diff": max(losses) - min(losses)}
    out[f"{arch}_same_loss"] = out[f"{arch}_loss_max_abs_diff"] <= 1e-5 * max(1.0, abs(losses[0]))
    configs = {name: (lambda b=b, images=images: step(b, images())) for name, (b, images) in inputs.items()}
    for name, fn in configs.items():
        before = _peak_memory_mb(reset=True, device=device)
        sec = _time(fn, steps, device)
        out[f"{arch}_{name}_samples_per_s"] = batch / sec
        out[f"{arch}_{name}_peak_memory_mb"] = _peak_memory_mb(device=device)
        out[f"{arch}_{name}_peak_memory_growth_mb"] = out[f"{arch}_{name}_peak_memory_mb"] - before
    text_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("text_model.", "text_projection")))
    tokens = int(dyn.attention_mask.sum())
    flops = 6 * text_params * tokens  # forward + backward of the text tower on the real tokens
    out[f"{arch}_engine_text_flops_per_s"] = flops * out[f"{arch}_engine_samples_per_s"] / batch
    out[f"{arch}_cache_build_s_per_image"] = cache_seconds / batch
    return out


def recipe_step(scenes: int, steps: int, root: Path) -> dict:
    """The default recipe's step on a world of `scenes` training scenes: equality, then reference vs fast."""
    from accelerate import Accelerator
    from transformers import CLIPTokenizer

    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import compute_loss
    from negation_testbed.instruments.base_clip import BASE_DIR
    from negation_testbed.recipes import get_recipe
    from negation_testbed.run import SharedInputs, recipe_config
    from negation_testbed.world.datagen import generate_negation_data, make_train_world

    recipe = get_recipe("default")
    world = make_train_world(root / "world" / "images", n_scenes=scenes)
    tok = CLIPTokenizer.from_pretrained(BASE_DIR)
    generated = generate_negation_data(world, root / "world" / "data", recipe.sources, tokenizer=tok, seed=0,
                                       progress=False)
    shared = SharedInputs({recipe.data_variant: {s: p for s, (p, _) in generated.items()}}, world.image_root,
                          None, tok, None, steps=max(steps, 1), cache_dir=root / "cache")
    acc = Accelerator(cpu=not torch.cuda.is_available())
    out: dict = {"recipe_scenes": scenes}

    def state_for(route: str, frozen_mb: int):
        cfg = recipe_config(recipe, shared, out=root / route).override({"data.frozen_cache_mb": frozen_mb})
        run = RunDir(cfg.run.out)
        begin = time.perf_counter()
        state = setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run,
                      ImageEmbeddingCache(root / "cache"), progress=False)
        out[f"recipe_{route}_setup_s"] = time.perf_counter() - begin
        g = torch.Generator().manual_seed(5)  # off the base, the same way in both: no preservation term is 0
        with torch.no_grad():
            for p in state.params:
                p.add_(0.01 * torch.randn(p.shape, generator=g).to(p.device))
        return state

    # the reference: one padded batch per view, the frozen base and CLIPSeg run every step; the fast route:
    # length buckets in one tower call, the frozen outputs computed once before the first step
    ref, fast = state_for("reference", 0), state_for("fast", 4096)
    out["recipe_examples"] = len(fast.examples)
    out["recipe_frozen_kept_mb"] = fast.cache.used / 2**20

    def loss_and_grads(state, reference: bool, step: int = 0):
        loss, _ = compute_loss(state, state.batch(step, 0).to(acc.device), step, 0, reference=reference)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in state.tower.named_parameters() if p.grad is not None}
        state.optimizer.zero_grad(set_to_none=True)
        return loss.item(), grads

    ref_loss, ref_grads = loss_and_grads(ref, reference=True)
    fast_loss, fast_grads = loss_and_grads(fast, reference=False)
    out["recipe_loss_rel_diff"] = abs(fast_loss - ref_loss) / max(abs(ref_loss), 1e-12)
    # the gradient as one vector: a parameter whose true gradient is 0 (CLIP's key biases) holds float noise
    # that a per-tensor relative difference would blow up
    ref_vec = torch.cat([g.flatten() for g in ref_grads.values()])
    fast_vec = torch.cat([fast_grads[n].flatten() for n in ref_grads])
    out["recipe_grad_rel_diff"] = float((fast_vec - ref_vec).norm() / ref_vec.norm().clamp_min(1e-12))
    out["recipe_same_loss"] = out["recipe_loss_rel_diff"] <= 1e-5
    out["recipe_same_gradient"] = out["recipe_grad_rel_diff"] <= 1e-4

    def timed(state, reference: bool) -> float:
        begin = time.perf_counter()
        for step in range(1, steps + 1):
            loss, _ = compute_loss(state, state.batch(step, 0).to(acc.device), step, 0, reference=reference)
            loss.backward()
            state.optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - begin) / steps

    for rnd in range(2):  # interleaved, so a change in the machine's load hits both routes
        out[f"recipe_reference_s_per_step_{rnd}"] = timed(ref, reference=True)
        out[f"recipe_fast_s_per_step_{rnd}"] = timed(fast, reference=False)
    out["recipe_reference_s_per_step"] = min(out[f"recipe_reference_s_per_step_{r}"] for r in range(2))
    out["recipe_fast_s_per_step"] = min(out[f"recipe_fast_s_per_step_{r}"] for r in range(2))
    out["recipe_fast_ratio"] = out["recipe_reference_s_per_step"] / out["recipe_fast_s_per_step"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)  # --json, --smoke (a tiny architecture, batch 4, 1 step: seconds)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--archs", default="b32,l14")
    ap.add_argument("--recipe-scenes", type=int, default=6000, help="world scenes for the default recipe's step "
                    "(the demo's size; 0 skips that part)")
    ap.add_argument("--recipe-steps", type=int, default=10, help="steps timed per route")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the architectures' part runs")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: each timed step under "
                    "bf16 autocast")
    ap.add_argument("--gemm-size", type=int, default=2048, help="side of the matmul that measures the peak")
    args = ap.parse_args(argv)
    if args.smoke:
        args.archs, args.batch, args.steps, args.recipe_scenes, args.recipe_steps = "tiny", 4, 1, 200, 1
        args.gemm_size = 256
    torch.manual_seed(0)
    results: dict = {"smoke": args.smoke, "archs": args.archs, "batch": args.batch, "steps": args.steps,
                     "threads": torch.get_num_threads(), "device": args.device, "precision": args.precision,
                     "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}
    results["gemm_flops_per_s"] = gemm_flops(args.gemm_size, 20 if args.device == "cuda" else 5, args.device,
                                             args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            results.update(run_arch(arch, args.batch, args.steps, Path(tmp), args.device, args.precision))
        if args.recipe_scenes:
            results.update(recipe_step(args.recipe_scenes, args.recipe_steps, Path(tmp)))
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
    return report(results, args.json)


if __name__ == "__main__":
    main()
