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

from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import RunFolder, atomic_write_text

from .instruments.base_clip import BASE_DIR
from .recipes import get_recipe
from .run import SharedInputs, fit_summary, run_recipe, split_evaluation
from .world import twins as B
from .world.datagen import generate_negation_data, make_train_world
from .world.scenes import render

LABELS = B.METRIC_LABELS
DEMO_FILES = ("results.json", "report.md", "report.png", "run", "drop_in")  # the world/ folder is a deterministic cache
COLUMNS = ("base", "base_split", "finetuned", "finetuned_split")
COLUMN_TITLES = {"base": "base", "base_split": "base + split", "finetuned": "fine-tuned",
                 "finetuned_split": "fine-tuned + split"}
COLUMN_COLOURS = {"base": (150, 150, 150), "base_split": (210, 160, 60), "finetuned": (40, 90, 220),
                  "finetuned_split": (30, 160, 110)}


def load_base(base: str | Path = BASE_DIR):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    base = Path(base)
    if not (base / "model.safetensors").exists():
        raise InputError(f"{base}: no committed base model (regenerate it with `negenc testbed pretrain`)")
    return (CLIPModel.from_pretrained(base).eval(), CLIPTokenizer.from_pretrained(base),
            CLIPImageProcessor.from_pretrained(base))


def results_table(columns: dict[str, dict]) -> str:
    """Markdown: one row per metric, one column per model/scoring (base, base + split, ...)."""
    names = [c for c in COLUMNS if c in columns]
    rows = ["| metric | " + " | ".join(COLUMN_TITLES[c] for c in names) + " |", "|---|" + "---:|" * len(names)]
    for k in B.METRIC_KEYS:
        rows.append(f"| {LABELS[k].strip()} | " + " | ".join(f"{columns[c][k]:.3f}" for c in names) + " |")
    return "\n".join(rows)


def _text_table(columns: dict[str, dict]) -> str:
    names = [c for c in COLUMNS if c in columns]
    lines = [f"{'metric':30s} " + " ".join(f"{COLUMN_TITLES[c]:>18s}" for c in names)]
    for k in B.METRIC_KEYS:
        lines.append(f"{LABELS[k]:30s} " + " ".join(f"{columns[c][k]:18.3f}" for c in names))
    return "\n".join(lines)


# What the fine-tuned encoder must reach on the benchmark twins, and how far zero-shot may fall.
TARGETS = {"existence": 0.87, "mcq": 0.54, "pairwise": 0.37}
ZEROSHOT_DROP = 0.01


def verdict(columns: dict[str, dict]) -> list[tuple[str, bool]]:
    """(line, met) for each target of the fine-tuned encoder (plain scoring)."""
    tuned, base = columns["finetuned"], columns["base"]
    out = [(f"{LABELS[k].strip()} {tuned[k]:.3f} >= {t:.2f}", tuned[k] >= t) for k, t in TARGETS.items()]
    out.append((f"zero-shot {tuned['zeroshot']:.3f} within {ZEROSHOT_DROP:.2f} of the base's {base['zeroshot']:.3f}",
                tuned["zeroshot"] >= base["zeroshot"] - ZEROSHOT_DROP))
    return out


def _font(size: int = 12):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _words(d: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill, font) -> None:
    """Text drawn word by word with an explicit space between words: a bitmap fallback font (Pillow
    without FreeType) may drop spaces, which made example captions unreadable."""
    x, y = xy
    space = max(4.0, font.getlength(" ")) if hasattr(font, "getlength") else 5.0
    for word in text.split():
        d.text((x, y), word, fill=fill, font=font)
        x += (font.getlength(word) if hasattr(font, "getlength") else 6 * len(word)) + space


def example_items(n_items: int, k: int, seed: int = 0) -> list[int]:
    """k MCQ items drawn at random (seeded), not chosen by outcome: the report shows wins and losses."""
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(n_items, size=min(k, n_items), replace=False).tolist())


def outcome(base_right: bool, tuned_right: bool) -> tuple[str, tuple[int, int, int]]:
    return {(False, True): ("fixed by fine-tuning", (0, 130, 0)), (True, False): ("broken by fine-tuning", (190, 0, 0)),
            (True, True): ("both right", (90, 90, 90)), (False, False): ("both wrong", (120, 60, 0))}[
        (base_right, tuned_right)]


def draw_report_png(path: Path, columns: dict[str, dict], suite: B.Suite, base_pred: list[int],
                    tuned_pred: list[int], n_examples: int = 6, seed: int = 0) -> None:
    """Bars per metric for every column, then MCQ examples drawn at random (not picked by outcome), each
    labelled with what the fine-tuning did to it."""
    font, bold = _font(12), _font(13)
    w, bar_h = 980, 16
    keys = list(B.METRIC_KEYS)
    names = [c for c in COLUMNS if c in columns]
    ex_h = 112
    picks = example_items(len(suite.mcq), n_examples, seed)
    h = 40 + len(keys) * (len(names) * bar_h + 10) + 50 + len(picks) * ex_h
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    x = 10
    for c in names:
        d.rectangle([x, 12, x + 12, 24], fill=COLUMN_COLOURS[c])
        _words(d, (x + 16, 11), COLUMN_TITLES[c], "black", font)
        x += 40 + int(font.getlength(COLUMN_TITLES[c]))
    y = 40
    for k in keys:
        _words(d, (10, y + 2), LABELS[k].strip(), "black", font)
        for j, c in enumerate(names):
            val, yy = columns[c][k], y + j * bar_h
            d.rectangle([230, yy, 230 + int(560 * val), yy + bar_h - 3], fill=COLUMN_COLOURS[c])
            d.text((235 + int(560 * val), yy + 1), f"{val:.2f}", fill="black", font=font)
        y += len(names) * bar_h + 10
    y += 10
    _words(d, (10, y), f"{len(picks)} MCQ items drawn at random (seed {seed}), wins and losses alike:", "black", bold)
    y += 30
    for i in picks:
        scene_idx, texts, correct, template, _ = suite.mcq[i]
        label, colour = outcome(base_pred[i] == correct, tuned_pred[i] == correct)
        im = Image.fromarray(render(suite.scenes[scene_idx])[0]).resize((96, 96), Image.NEAREST)
        img.paste(im, (10, y))
        _words(d, (120, y + 2), f"[{label}]", colour, bold)
        _words(d, (120, y + 24), f"true ({template}): {texts[correct]}", (0, 110, 0), font)
        _words(d, (120, y + 46), f"base picked: {texts[base_pred[i]]}", "black", font)
        _words(d, (120, y + 68), f"fine-tuned picked: {texts[tuned_pred[i]]}", (40, 90, 220), font)
        y += ex_h
    img.save(path)


def run_demo(out: str | Path = "demo_out", recipe: str = "default", seed: int = 0, base: str | Path = BASE_DIR,
             n_scenes: int = 6000, steps: int | None = None, bench_size: int = B.DEFAULT_SIZE,
             overwrite: bool = False, progress: bool = True, drop_in: bool = True, target: str | None = None) -> dict:
    """The main job; returns results.json's content. A folder that already holds a demo's results is
    refused unless `overwrite` (the world's images and generated data are reused: they are deterministic).

    Four columns: the base and the fine-tuned encoder, each scored plainly (one cosine per caption) and
    with the training-free split reader (`negation_encoder.split_scorer`), whose weight is fitted for each
    model on the world's training records. With `drop_in`, the fine-tuned encoder is then swapped into the
    world's frozen segmenter and generators, beside the training-free routes (`drop_in.measure.drop_in`).
    `target` (`recipes.TARGETS`: if, sd, sdxl, clipseg) trains the recipe for that model's reading of the
    tower instead of the recipe's own (the default recipe's is the IF-style generator's)."""
    start = time.perf_counter()
    out = Path(out)
    rec = get_recipe(recipe)
    if target is not None:
        rec = rec.for_target(target)
    folder = RunFolder(out, DEMO_FILES, can_resume=False)
    folder.check(overwrite=overwrite)
    with folder.lock():  # a second demo into this folder is refused (one line), not interleaved
        model, tokenizer, processor = load_base(base)
        folder.prepare(overwrite=overwrite)
        stages: dict[str, float] = {}  # seconds per stage: where the demo's time goes (report and results.json)
        mark = start

        def lap(stage: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            stages[stage] = round(now - mark, 1)
            mark = now

        lap("load")
        print(f"[1/5] world: {n_scenes} training scenes -> {out / 'world'}")
        world = make_train_world(out / "world" / "images", n_scenes=n_scenes)
        print(f"[2/5] negation data ({', '.join(rec.sources)}) with oracle LLM/MLLM backends")
        generated = generate_negation_data(world, out / "world" / rec.data_variant, rec.sources, tokenizer=tokenizer,
                                           seed=seed, progress=progress, compositional=rec.compositional)
        for src, (path, stats) in generated.items():
            s = stats.to_dict()
            print(f"      {src:9s} {s['records_written'] + 0:5d} new records -> {path.name}; rejects {s['rejects'] or 'none'}")
        data = {src: path for src, (path, _) in generated.items()}
        lap("world and data")
        print(f"[3/5] benchmarks (seed {B.BENCH_SEED}, {bench_size} items each): base model, plain and split scoring")
        suite = B.build_suite(size=bench_size)
        columns: dict[str, dict] = {}
        weights: dict[str, dict] = {}
        columns["base"], base_details = B.evaluate(model, tokenizer, processor, suite, return_details=True)
        columns["base_split"], base_scorer = split_evaluation(model, tokenizer, processor, suite, data, world.image_root,
                                                              seed)
        weights["base"] = fit_summary(base_scorer)
        lap("base benchmarks")
        print(f"[4/5] fine-tune text encoder, recipe {rec.name!r}: {rec.description}")
        shared = SharedInputs(datasets={rec.data_variant: data}, images=world.image_root, suite=suite,
                              tokenizer=tokenizer, processor=processor, base_metrics=columns["base"],
                              base_split_metrics=columns["base_split"], base=base, steps=steps)
        run = run_recipe(rec, shared=shared, out=out / "run", seed=seed, overwrite=overwrite, progress=progress)
        lap("fine-tune and its benchmarks")
        print("[5/5] benchmarks: fine-tuned model (as exported), plain and split scoring")
        columns["finetuned"], columns["finetuned_split"], weights["finetuned"] = run.metrics, run.split_metrics, \
            run.split_fit
        seconds = time.perf_counter() - start
        results = {**columns, "split_weights": weights, "recipe": rec.name, "target": target or "recipe",
                   "pipeline": rec.config.get("pipeline", {}), "seconds": round(seconds, 1),
                   "checkpoint": str(run.model_dir), "provenance": provenance()}
        if drop_in:
            from .drop_in.measure import drop_in as measure_drop_in

            print("[6/6] drop-in: the fine-tuned encoder in the world's frozen segmenter and generator")
            results["drop_in"] = measure_drop_in(run.model_dir, out / "drop_in", progress=progress)
            lap("drop-in")
            results["seconds"] = round(time.perf_counter() - start, 1)
        results["stage_seconds"] = stages
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
        draw_report_png(out / "report.png", columns, suite, base_details["mcq_pred"], run.details["mcq_pred"], seed=seed)
        checks = verdict(columns)
        report = [f"# negenc demo — recipe `{rec.name}`", "", rec.description, "", results_table(columns), "",
                  "## Targets (the fine-tuned encoder, plain scoring)", "",
                  *[f"- {'met' if ok else 'MISSED'}: {line}" for line, ok in checks], "",
                  f"Verdict: {sum(ok for _, ok in checks)} of {len(checks)} targets met.", "",
                  "## How the split columns read a caption", "",
                  "Split scoring reads a caption as sim(image, affirmative part) - w * (max sim(image, negated concept) "
                  "- b), with (w, b) fitted per model on the world's training records (not the generator prompts): "
                  + ", ".join(f"{k} w={v['weight']}, b={v['offset']}" for k, v in weights.items()) + ". "
                  "A weight of 0 means the fit found it best to drop the negated concepts and score the affirmative "
                  "part alone (\"a kitchen with a cup and no fork\" read as \"a kitchen with a cup\"): that already beats "
                  "a negation-blind reading that sees \"fork\" as present.", "",
                  f"MCQ wrong picks by template (base): {json.dumps(base_details['mcq_wrong_picked'])}",
                  f"MCQ wrong picks by template (fine-tuned): {json.dumps(run.details['mcq_wrong_picked'])}", "",
                  f"Checkpoint: `{run.model_dir}`; took {results['seconds']:.0f} s ("
                  + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ").", "", "![before/after](report.png)"]
        if drop_in:
            from .drop_in.measure import drop_in_markdown

            report += ["", drop_in_markdown(results["drop_in"])]
        atomic_write_text(out / "report.md", "\n".join(report) + "\n")
        print()
        print(_text_table(columns))
        print(f"\nsplit weights (fitted on training records): {json.dumps(weights)}")
        print(f"results: {out / 'results.json'}  report: {out / 'report.md'}  checkpoint: {run.model_dir}  "
              f"({results['seconds']:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")")
        return results
