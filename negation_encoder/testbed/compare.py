"""`negenc testbed compare`: every recipe on the same world data, several seeds, one table.

All recipes share the training world, the generated negation data (all four pipelines are run once)
and the benchmark suite; each (recipe, seed) fine-tunes the committed base from scratch.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ..training.config import TrainConfig
from ..training.trainer import train
from . import benchmarks as B
from .datagen import generate_negation_data, make_train_world
from .demo import LABELS, load_base
from .pretrain import BASE_DIR
from .recipes import RECIPES, get_recipe

COLUMNS = ("existence", "mcq", "mcq_negative", "pairwise", "retrieval_negated_r5", "retrieval_plain_r5",
           "heldout_existence", "heldout_mcq", "zeroshot")


def compare(out: str | Path = "compare_out", recipes: list[str] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
            n_scenes: int = 6000, steps: int | None = None, bench_size: int = B.DEFAULT_SIZE,
            progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = recipes or list(RECIPES)
    for n in names:
        get_recipe(n)
    model, tokenizer, processor = load_base()
    world = make_train_world(out / "world" / "images", n_scenes=n_scenes)
    data = generate_negation_data(world, out / "world" / "data", ("p1", "rand_p1", "p2", "presence"),
                                  tokenizer=tokenizer, progress=progress)
    suite = B.build_suite(size=bench_size)
    results: dict = {"base": B.evaluate(model, tokenizer, processor, suite), "recipes": {}}
    from transformers import CLIPModel

    for name in names:
        rec = get_recipe(name)
        runs = []
        for seed in seeds:
            start = time.perf_counter()
            overrides = dict(rec.overrides, seed=seed, cache_dir=str(out / "image_cache"))
            if steps is not None:
                overrides.update(steps=steps, warmup_steps=min(overrides.get("warmup_steps", 0), steps),
                                 save_every=steps)
            cfg = TrainConfig(base=str(BASE_DIR), data=[str(data[s][0]) for s in rec.sources],
                              images=str(world.image_root), out=str(out / "runs" / f"{name}-seed{seed}")).override(overrides)
            res = train(cfg, progress=progress)
            metrics = B.evaluate(CLIPModel.from_pretrained(res.out / "model").eval(), tokenizer, processor, suite)
            metrics["seconds"] = time.perf_counter() - start
            runs.append(metrics)
            print(f"{name:22s} seed {seed}: mcq {metrics['mcq']:.3f} existence {metrics['existence']:.3f} "
                  f"({metrics['seconds']:.0f} s)", flush=True)
        results["recipes"][name] = {"description": rec.description, "runs": runs}
    (out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    table = compare_table(results)
    (out / "compare.md").write_text(table + "\n")
    print(table)
    return results


def _cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def compare_table(results: dict) -> str:
    head = "| recipe | " + " | ".join(LABELS[c].strip() for c in COLUMNS) + " |"
    rows = [head, "|---|" + "---:|" * len(COLUMNS)]
    rows.append("| base | " + " | ".join(f"{results['base'][c]:.3f}" for c in COLUMNS) + " |")
    for name, r in results["recipes"].items():
        rows.append(f"| {name} | " + " | ".join(_cell([run[c] for run in r["runs"]]) for c in COLUMNS) + " |")
    return "\n".join(rows)
