"""One recipe, one seed, on the world: fine-tune, reload the export, evaluate once, record the results.

The demo and `negenc testbed compare` both call `run_recipe`, so a recipe means the same run in both.
The fine-tuned model is evaluated exactly once, as users will load it (from the exported folder), and
the results go into that folder's eval_results.json and model card.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..training.export import write_eval_results
from ..training.trainer import TrainResult, train
from . import benchmarks as B
from .pretrain import BASE_DIR
from .recipes import Recipe


@dataclass
class RecipeRun:
    recipe: str
    seed: int
    model_dir: Path
    metrics: dict
    details: dict
    seconds: float
    train: TrainResult


def run_recipe(recipe: Recipe, *, data: Mapping[str, str | Path], images: str | Path, out: str | Path,
               suite: B.Suite, tokenizer, processor, base_metrics: dict | None = None, seed: int = 0,
               steps: int | None = None, cache_dir: str | Path = "", base: str | Path = BASE_DIR,
               overwrite: bool = False, progress: bool = True) -> RecipeRun:
    from transformers import CLIPModel

    start = time.perf_counter()
    cfg = recipe.to_config(base=base, data=data, images=images, out=out, seed=seed, steps=steps, cache_dir=cache_dir)
    result = train(cfg, overwrite=overwrite, progress=progress)
    model = CLIPModel.from_pretrained(result.model_dir).eval()  # what users will load
    metrics, details = B.evaluate(model, tokenizer, processor, suite, return_details=True)
    results = {"finetuned": metrics, "recipe": recipe.name, "seed": seed}
    if base_metrics is not None:
        results["base"] = base_metrics
    write_eval_results(result.model_dir, results)
    return RecipeRun(recipe.name, seed, result.model_dir, metrics, details, time.perf_counter() - start, result)
