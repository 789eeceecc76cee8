"""`negenc demo`: the whole method end to end on the offline world, with before/after numbers.

committed base CLIP -> negation data through the real pipelines (oracle backends) -> fine-tune the
text encoder with the training engine -> evaluate base and fine-tuned on the benchmark twins ->
checkpoint folder (with model card), results.json, report.md and report.png. The drop-in into
diffusers / CLIPSeg is run by the CLI layer (`negenc demo`), since this package never runs a pipeline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import InputError
from ..training.run_dir import atomic_write_text
from . import benchmarks as B
from .datagen import generate_negation_data, make_train_world
from .pretrain import BASE_DIR
from .recipes import get_recipe
from .run import run_recipe
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
             overwrite: bool = False, progress: bool = True) -> dict:
    """The main job; returns results.json's content. A folder that already holds a demo's results is
    refused unless `overwrite` (the world's images and generated data are reused: they are deterministic)."""
    start = time.perf_counter()
    out = Path(out)
    rec = get_recipe(recipe)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, expected a folder")
    previous = [p.name for p in (out / "results.json", out / "run") if p.exists()]
    if previous and not overwrite:
        raise InputError(f"--out {out}: already holds a demo ({', '.join(previous)}); pass --overwrite to replace it")
    model, tokenizer, processor = load_base(base)
    out.mkdir(parents=True, exist_ok=True)
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
    run = run_recipe(rec, data={src: path for src, (path, _) in data.items()}, images=world.image_root,
                     out=out / "run", suite=suite, tokenizer=tokenizer, processor=processor,
                     base_metrics=base_metrics, seed=seed, steps=steps, base=base, overwrite=overwrite,
                     progress=progress)
    print("[5/5] benchmarks: fine-tuned model (evaluated once, as exported)")
    seconds = time.perf_counter() - start
    results = {"base": base_metrics, "finetuned": run.metrics, "recipe": rec.name, "seconds": round(seconds, 1),
               "checkpoint": str(run.model_dir)}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    draw_report_png(out / "report.png", base_metrics, run.metrics, suite, base_details["mcq_pred"],
                    run.details["mcq_pred"])
    report = [f"# negenc demo — recipe `{rec.name}`", "", rec.description, "", results_table(base_metrics, run.metrics),
              "", f"MCQ wrong picks by template (base): {json.dumps(base_details['mcq_wrong_picked'])}",
              f"MCQ wrong picks by template (fine-tuned): {json.dumps(run.details['mcq_wrong_picked'])}", "",
              f"Checkpoint: `{run.model_dir}`; took {seconds:.0f} s.", "", "![before/after](report.png)"]
    atomic_write_text(out / "report.md", "\n".join(report) + "\n")
    print()
    print(_text_table(base_metrics, run.metrics))
    print(f"\nresults: {out / 'results.json'}  report: {out / 'report.md'}  checkpoint: {run.model_dir}  "
          f"({seconds:.0f} s)")
    return results


def add_drop_in_check(out: str | Path, check: dict) -> None:
    """Record the drop-in check (run by the CLI layer through `integrations`) in results.json and report.md."""
    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    results["drop_in"] = check
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    report = (out / "report.md").read_text()
    report += f"\n## Drop-in check\n\nSwapped into a tiny SD 1.x pipeline and a tiny CLIPSeg: `{json.dumps(check)}`\n"
    atomic_write_text(out / "report.md", report)
