"""`negenc demo`: the whole method end to end on the offline world, with before/after numbers.

committed base CLIP -> negation data through the real pipelines (oracle backends) -> fine-tune the
text encoder with the training engine -> evaluate base and fine-tuned on the benchmark twins ->
checkpoint folder (with model card), results.json, report.md and report.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import InputError
from ..training.config import TrainConfig
from ..training.trainer import train
from . import benchmarks as B
from .datagen import generate_negation_data, make_train_world
from .pretrain import BASE_DIR
from .recipes import get_recipe
from .world import render

LABELS = {
    "existence": "existence (VALSE-style)", "mcq": "MCQ (NegBench wording)", "mcq_positive": "  MCQ positive",
    "mcq_negative": "  MCQ negative", "mcq_hybrid": "  MCQ hybrid", "pairwise": "pairwise referring",
    "retrieval_negated_r5": "negated retrieval R@5", "retrieval_plain_r5": "plain retrieval R@5",
    "heldout_existence": "held-out existence", "heldout_mcq": "held-out MCQ", "zeroshot": "zero-shot top-1",
}


def load_base(base: str | Path = BASE_DIR):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    base = Path(base)
    if not (base / "model.safetensors").exists():
        raise InputError(f"{base}: no committed base model (regenerate it with `negenc testbed pretrain`)")
    return (CLIPModel.from_pretrained(base).eval(), CLIPTokenizer.from_pretrained(base),
            CLIPImageProcessor.from_pretrained(base))


def results_table(base: dict, finetuned: dict) -> str:
    rows = ["| metric | base | fine-tuned | change |", "|---|---:|---:|---:|"]
    for k in B.METRIC_KEYS:
        rows.append(f"| {LABELS[k].strip()} | {base[k]:.3f} | {finetuned[k]:.3f} | {finetuned[k] - base[k]:+.3f} |")
    return "\n".join(rows)


def _text_table(base: dict, finetuned: dict) -> str:
    lines = [f"{'metric':28s} {'base':>7s} {'tuned':>7s} {'change':>7s}"]
    for k in B.METRIC_KEYS:
        lines.append(f"{LABELS[k]:28s} {base[k]:7.3f} {finetuned[k]:7.3f} {finetuned[k] - base[k]:+7.3f}")
    return "\n".join(lines)


def draw_report_png(path: Path, base: dict, finetuned: dict, suite: B.Suite, base_pred: list[int],
                    tuned_pred: list[int], n_examples: int = 4) -> None:
    """Before/after bars per metric, and example scenes with the MCQ caption each model picked."""
    w, bar_h = 900, 22
    keys = list(B.METRIC_KEYS)
    ex_h = 110
    h = 40 + len(keys) * (2 * bar_h + 8) + 30 + n_examples * ex_h
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), "base (grey) vs fine-tuned (blue)", fill="black")
    y = 40
    for k in keys:
        d.text((10, y + 12), LABELS[k].strip(), fill="black")
        for j, (val, colour) in enumerate(((base[k], (150, 150, 150)), (finetuned[k], (40, 90, 220)))):
            yy = y + j * bar_h
            d.rectangle([230, yy, 230 + int(560 * val), yy + bar_h - 4], fill=colour)
            d.text((235 + int(560 * val), yy + 4), f"{val:.2f}", fill="black")
        y += 2 * bar_h + 8
    y += 20
    shown = 0
    for i, (scene_idx, texts, correct, template, _) in enumerate(suite.mcq):
        if shown >= n_examples:
            break
        if base_pred[i] == correct or tuned_pred[i] != correct:
            continue  # show items the fine-tuning fixed
        im = Image.fromarray(render(suite.scenes[scene_idx])[0]).resize((96, 96), Image.NEAREST)
        img.paste(im, (10, y))
        d.text((120, y + 5), f"true ({template}): {texts[correct]}", fill=(0, 120, 0))
        d.text((120, y + 30), f"base picked: {texts[base_pred[i]]}", fill=(180, 0, 0))
        d.text((120, y + 55), f"fine-tuned picked: {texts[tuned_pred[i]]}", fill=(40, 90, 220))
        y += ex_h
        shown += 1
    img.save(path)


def run_demo(out: str | Path = "demo_out", recipe: str = "default", seed: int = 0, base: str | Path = BASE_DIR,
             n_scenes: int = 6000, steps: int | None = None, bench_size: int = B.DEFAULT_SIZE,
             progress: bool = True) -> dict:
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rec = get_recipe(recipe)
    model, tokenizer, processor = load_base(base)
    print(f"[1/5] world: {n_scenes} training scenes -> {out / 'world'}")
    world = make_train_world(out / "world" / "images", n_scenes=n_scenes)
    print(f"[2/5] negation data ({', '.join(rec.sources)}) with oracle LLM/MLLM backends")
    data = generate_negation_data(world, out / "world" / "data", rec.sources, tokenizer=tokenizer, seed=seed,
                                  progress=progress)
    for src, (path, stats) in data.items():
        s = stats.to_dict()
        print(f"      {src:9s} {s['records_written'] + 0:5d} new records -> {path.name}; rejects {s['rejects'] or 'none'}")
    print(f"[3/5] benchmarks (seed {B.BENCH_SEED}, {bench_size} items each): base model")
    suite = B.build_suite(size=bench_size)
    base_metrics, base_details = B.evaluate(model, tokenizer, processor, suite, return_details=True)
    print(f"[4/5] fine-tune text encoder, recipe {rec.name!r}: {rec.description}")
    overrides = dict(rec.overrides, seed=seed)
    if steps is not None:
        overrides["steps"] = steps
        overrides["warmup_steps"] = min(overrides.get("warmup_steps", 0), steps)
        overrides["save_every"] = max(1, min(overrides.get("save_every", 100), steps))
    cfg = TrainConfig(base=str(base), data=[str(p) for p, _ in data.values()], images=str(world.image_root),
                      out=str(out / "run")).override(overrides)

    def eval_fn(m):
        return B.evaluate(m, tokenizer, processor, suite)

    result = train(cfg, eval_fn=eval_fn, progress=progress)
    from transformers import CLIPModel

    tuned_model = CLIPModel.from_pretrained(result.out / "model").eval()  # what users will load
    print("[5/5] benchmarks: fine-tuned model")
    tuned_metrics, tuned_details = B.evaluate(tuned_model, tokenizer, processor, suite, return_details=True)
    seconds = time.perf_counter() - start
    results = {"base": base_metrics, "finetuned": tuned_metrics, "recipe": rec.name, "seconds": round(seconds, 1),
               "checkpoint": str(result.out / "model")}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (result.out / "model" / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    from ..hub import write_model_card

    write_model_card(result.out / "model")
    draw_report_png(out / "report.png", base_metrics, tuned_metrics, suite, base_details["mcq_pred"],
                    tuned_details["mcq_pred"])
    report = [f"# negenc demo — recipe `{rec.name}`", "", rec.description, "", results_table(base_metrics, tuned_metrics), "",
              f"MCQ wrong picks by template (base): {json.dumps(base_details['mcq_wrong_picked'])}",
              f"MCQ wrong picks by template (fine-tuned): {json.dumps(tuned_details['mcq_wrong_picked'])}", "",
              f"Checkpoint: `{result.out / 'model'}`; took {seconds:.0f} s.", "", "![before/after](report.png)"]
    smoke = _drop_in_check(result.out / "model")
    if smoke:
        report += ["", "## Drop-in check", "", f"Swapped into a tiny SD 1.x pipeline and a tiny CLIPSeg: `{json.dumps(smoke)}`"]
        results["drop_in"] = smoke
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text("\n".join(report) + "\n")
    print()
    print(_text_table(base_metrics, tuned_metrics))
    if smoke:
        print(f"\ndrop-in: SD 1.x image {smoke['sd_image_shape']}, CLIPSeg logits {smoke['clipseg_logits_shape']}")
    print(f"\nresults: {out / 'results.json'}  report: {out / 'report.md'}  checkpoint: {result.out / 'model'}  "
          f"({seconds:.0f} s)")
    return results


def _drop_in_check(folder: Path) -> dict | None:
    """Swap the encoder into a tiny SD 1.x pipeline and CLIPSeg (when the integrations are installed)."""
    try:
        from integrations.smoke import smoke_test
    except ImportError:  # the integrations package is optional for the core library
        return None
    return smoke_test(folder)
