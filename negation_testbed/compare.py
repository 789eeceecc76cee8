"""`negenc testbed compare`: every recipe on the same world data, several seeds, one table.

All recipes share the training world, the generated negation data (all four pipelines are run once)
and the benchmark suite; each (recipe, seed) fine-tunes the committed base from scratch. With
`transfer`, each fine-tuned encoder is also swapped into the world's frozen segmenter and generator
(`transfer.drop_in`, the demo's small measurement), so a recipe is judged as a drop-in, not only on the
encoder benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from negation_encoder.results import provenance
from negation_encoder.runio import RunFolder, atomic_write_text

from . import benchmarks as B
from .datagen import T2I_SOURCE, generate_negation_data, make_train_world
from .demo import load_base
from .recipes import RECIPES, get_recipe
from .reports import compare_table
from .run import fit_summary, run_recipe, split_evaluation

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
            transfer_settings: dict | None = None) -> dict:
    """`transfer_settings`: keyword arguments for `transfer.drop_in` (its defaults are the demo's sizes)."""
    out = Path(out)
    names = recipes or list(RECIPES)
    for n in names:
        get_recipe(n)
    RunFolder(out, ("compare.json", "compare.md", "runs"), can_resume=False).prepare(overwrite=overwrite)
    model, tokenizer, processor = load_base()
    world = make_train_world(out / "world" / "images", n_scenes=n_scenes)
    datasets: dict[str, dict] = {}
    extra = (T2I_SOURCE,) if any(T2I_SOURCE in get_recipe(n).sources for n in names) else ()
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
    bar = tqdm(total=len(names) * len(seeds), desc="compare: runs", disable=not progress)
    for name in names:
        rec = get_recipe(name)
        runs = []
        for seed in seeds:
            run = run_recipe(rec, data=datasets[rec.data_variant], images=world.image_root, out=out / "runs" / f"{name}-seed{seed}",
                             suite=suite, tokenizer=tokenizer, processor=processor, base_metrics=results["base"], base_split_metrics=base_split,
                             seed=seed, steps=steps, cache_dir=out / "image_cache", overwrite=overwrite,
                             progress=False)
            entry = {**run.metrics, "seconds": run.seconds, "split": run.split_metrics, "split_fit": run.split_fit}
            line = f"{name:22s} seed {seed}: mcq {run.metrics['mcq']:.3f} existence {run.metrics['existence']:.3f}"
            if transfer:
                from .transfer import drop_in

                drop = drop_in(run.model_dir, out / "runs" / f"{name}-seed{seed}" / "drop_in",
                               **(transfer_settings or {}))
                entry["transfer"] = transfer_values(drop)
                line += "".join(f"; {k} {v:.3f}" for k, v in entry["transfer"].items()
                                if k in ("seg negated mIoU (swapped)", "Neg Score (swapped)"))
            runs.append(entry)
            bar.update()
            bar.write(line + f" ({run.seconds:.0f} s)")
        results["recipes"][name] = {"description": rec.description, "runs": runs}
    bar.close()
    results["provenance"] = provenance()
    atomic_write_text(out / "compare.json", json.dumps(results, indent=2) + "\n")
    table = compare_table(results)
    atomic_write_text(out / "compare.md", table + "\n")
    print(table)
    return results
