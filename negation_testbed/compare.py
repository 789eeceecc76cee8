"""`negenc testbed compare`: every recipe on the same world data, several seeds, one table.

All recipes share the training world, the generated negation data (all four pipelines are run once)
and the benchmark suite; each (recipe, seed) fine-tunes the committed base from scratch. With
`transfer`, each fine-tuned encoder is also swapped into the world's frozen segmenter and generator
(`drop_in.measure.drop_in`, the demo's small measurement), so a recipe is judged as a drop-in, not only on the
encoder benchmarks.

A comparison survives interruption and grows: each finished (recipe, seed) leaves its numbers in its run
folder (`compare_entry.json`, written last), and `resume` reuses those, continues an unfinished run from
its newest training checkpoint, and runs the (recipe, seed) pairs not seen before, so a third seed is
one more command, not a new comparison. The shared world, data and benchmark suite are regenerated
(deterministically: the same bytes); settings that change every run (scenes, steps, benchmark size,
transfer, and with transfer the bytes of the frozen generator, segmenter and judge) must match the
folder's `compare_config.json`, and a run is refused by name when its recipe's
definition or the bytes of the data it trained on (`training.checks.data_fingerprint`: another version of the data
generation writes other records) changed since it was saved.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import RunFolder, atomic_write_json, atomic_write_text
from negation_encoder.training.checks import data_fingerprint, training_files

from .demo import load_base
from .recipes import RECIPES, Recipe, get_recipe
from .reports import compare_table
from .run import SharedInputs, fit_summary, recipe_config, run_recipe, split_evaluation
from .world import twins as B
from .world.datagen import FINE_TUNING_ONLY_SOURCES, generate_negation_data, make_train_world

# (label, where in drop_in's result): the transfer columns of the comparison
TRANSFER_COLUMNS = (
    ("seg negated mIoU (swapped)", ("seg", "negated", "swapped", "miou_0.3")),
    ("seg negated mIoU (original)", ("seg", "negated", "original", "miou_0.3")),
    ("seg object choice (swapped)", ("seg", "negated", "swapped", "target_wins")),
    ("seg control mIoU (swapped)", ("seg", "control", "swapped", "miou_0.3")),
    ("seg control mIoU (original)", ("seg", "control", "original", "miou_0.3")),
    ("Neg Score (swapped)", ("t2i", "negated", "swapped", "neg_score")),
    ("Neg Score (base)", ("t2i", "negated", "base", "neg_score")),
    ("Neg Score (negative prompt)", ("t2i", "negated", "base+negprompt", "neg_score")),
    ("negated object (swapped)", ("t2i", "negated", "swapped", "negated_rate")),
    ("negated object (base)", ("t2i", "negated", "base", "negated_rate")),
    ("control subject (swapped)", ("t2i", "control", "swapped", "subject_rate")),
    ("control subject (base)", ("t2i", "control", "base", "subject_rate")),
)


ENTRY = "compare_entry.json"  # in each run folder: that (recipe, seed)'s numbers, written when it is finished
OWNED = ("compare.json", "compare.md", "compare_config.json", "runs")


def _plain(obj):
    """`obj` as JSON reads it back (tuples become lists), so saved and current settings compare equal."""
    return json.loads(json.dumps(obj))


def recipe_fingerprint(rec: Recipe) -> dict:
    """What defines a recipe's runs: a finished run is reused only while its recipe still reads the same."""
    return _plain({"sources": rec.sources, "config": rec.config, "compositional": rec.compositional,
                   "seg": rec.seg})


def finished_entry(run_dir: Path, rec: Recipe, data: str) -> dict | None:
    """The saved numbers of a finished run, or None when the run never finished (no entry file). `data`: the
    fingerprint of the data the recipe would train on now."""
    path = run_dir / ENTRY
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}); delete it to rerun that seed") from None
    if saved.get("recipe") != recipe_fingerprint(rec):
        raise InputError(f"--resume: {path}: recipe {rec.name!r} changed since this run was saved; use another "
                         "--out or --overwrite")
    if saved.get("data") != data:
        raise InputError(f"--resume: {path}: the data recipe {rec.name!r} trains on changed since this run was saved "
                         f"(fingerprint {saved.get('data')} then, {data} now: another version of the data "
                         "generation); use another --out or --overwrite")
    return saved["entry"]


def run_line(name: str, seed: int, entry: dict) -> str:
    """The one line printed per run."""
    line = f"{name:22s} seed {seed}: mcq {entry['mcq']:.3f} existence {entry['existence']:.3f}"
    line += "".join(f"; {k} {v:.3f}" for k, v in entry.get("transfer", {}).items()
                    if k in ("seg negated mIoU (swapped)", "Neg Score (swapped)"))
    return line + f" ({entry['seconds']:.0f} s)"


def transfer_values(drop: dict) -> dict[str, float]:
    """The transfer columns of one `drop_in` result (a missing entry is left out, not zero)."""
    out = {}
    for label, path in TRANSFER_COLUMNS:
        node = drop
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            out[label] = float(node)
    return out


def compare(out: str | Path = "compare_out", recipes: list[str] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
            n_scenes: int = 6000, steps: int | None = None, bench_size: int = B.DEFAULT_SIZE,
            overwrite: bool = False, progress: bool = False, transfer: bool = True,
            transfer_settings: dict | None = None, resume: bool = False) -> dict:
    """`transfer_settings`: keyword arguments for `drop_in.measure.drop_in` (its defaults are the demo's sizes).
    `resume` continues a comparison in `out` (module docstring); the table covers `recipes` x `seeds`."""
    out = Path(out)
    names = recipes or list(RECIPES)
    for n in names:
        get_recipe(n)
    settings = _plain({"n_scenes": n_scenes, "steps": steps, "bench_size": bench_size, "transfer": transfer,
                       "transfer_settings": transfer_settings or {}})
    if transfer:  # resuming after the generator, segmenter or judge changed would mix two instruments' numbers
        from .drop_in.measure import instruments_fingerprint

        settings["instruments"] = instruments_fingerprint()
    folder = RunFolder(out, OWNED, fingerprint_name="compare_config.json")
    with folder.lock():  # a second comparison in the same folder is refused, not interleaved
        folder.prepare(resume, overwrite, settings)
        return _compare(out, names, seeds, n_scenes, steps, bench_size, progress, transfer, transfer_settings, resume)


def _compare(out: Path, names: list[str], seeds: tuple[int, ...], n_scenes: int, steps: int | None, bench_size: int,
             progress: bool, transfer: bool, transfer_settings: dict | None, resume: bool) -> dict:
    model, tokenizer, processor = load_base()
    world = make_train_world(out / "world" / "images", n_scenes=n_scenes)
    datasets: dict[str, dict] = {}
    extra = tuple(s for s in FINE_TUNING_ONLY_SOURCES if any(s in get_recipe(n).sources for n in names))
    for variant, compositional in sorted({(get_recipe(n).data_variant, get_recipe(n).compositional) for n in names}
                                         | {("data", False)}):
        generated = generate_negation_data(world, out / "world" / variant, ("p1", "rand_p1", "p2", "presence", *extra),
                                           tokenizer=tokenizer, progress=progress, compositional=compositional)
        datasets[variant] = {src: path for src, (path, _) in generated.items()}
    suite = B.build_suite(size=bench_size)
    base_split, base_scorer = split_evaluation(model, tokenizer, processor, suite, datasets["data"], world.image_root)
    base_fit = fit_summary(base_scorer)
    results: dict = {"base": B.evaluate(model, tokenizer, processor, suite), "base_split": base_split,
                     "base_split_fit": base_fit, "recipes": {}}
    shared = SharedInputs(datasets=datasets, images=world.image_root, suite=suite, tokenizer=tokenizer,
                          processor=processor, base_metrics=results["base"], base_split_metrics=base_split,
                          steps=steps, cache_dir=out / "image_cache")
    bar = tqdm(total=len(names) * len(seeds), desc="compare: runs", disable=not progress)
    for name in names:
        rec = get_recipe(name)
        runs = []
        for seed in seeds:
            run_dir = out / "runs" / f"{name}-seed{seed}"
            cfg = recipe_config(rec, shared, out=run_dir, seed=seed)
            data = data_fingerprint(training_files(cfg))
            entry = finished_entry(run_dir, rec, data) if resume else None
            if entry is not None:
                runs.append(entry)
                bar.update()
                bar.write(run_line(name, seed, entry) + " [finished earlier]")
                continue
            run = run_recipe(rec, shared=shared, out=run_dir, seed=seed, resume=resume and run_dir.exists(),
                             progress=False)
            entry = {**run.metrics, "seconds": run.seconds, "split": run.split_metrics, "split_fit": run.split_fit}
            if transfer:
                from .drop_in.measure import drop_in

                settings = {"generators": ("if",), **(transfer_settings or {})}  # its columns read the IF-style one
                entry["transfer"] = transfer_values(drop_in(run.model_dir, run_dir / "drop_in", **settings))
            atomic_write_json(run_dir / ENTRY, {"recipe": recipe_fingerprint(rec), "data": data, "seed": seed,
                                                "entry": entry})
            runs.append(entry)
            bar.update()
            bar.write(run_line(name, seed, entry))
        results["recipes"][name] = {"description": rec.description, "runs": runs}
    bar.close()
    results["provenance"] = provenance()
    atomic_write_text(out / "compare.json", json.dumps(results, indent=2) + "\n")
    table = compare_table(results)
    atomic_write_text(out / "compare.md", table + "\n")
    print(table)
    return results
