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
from typing import Any

from negation_encoder import results as R
from negation_encoder.checkpoint.export import write_eval_results
from negation_encoder.split_scorer import SplitScorer
from negation_encoder.training.trainer import TrainResult, train

from .instruments.base_clip import BASE_DIR
from .recipes import Recipe
from .world import twins as B
from .world.datagen import FINE_TUNING_ONLY_SOURCES


@dataclass
class RecipeRun:
    recipe: str
    seed: int
    model_dir: Path
    metrics: dict
    details: dict
    seconds: float
    train: TrainResult
    split_metrics: dict | None = None  # the same model read by the split scorer
    split_fit: dict | None = None  # its weight and threshold, fitted on training records


def split_evaluation(model, tokenizer, processor, suite: B.Suite, data: Mapping[str, str | Path],
                     images: str | Path, seed: int = 0) -> tuple[dict, SplitScorer]:
    """(METRICS with split scoring, the fitted reader): the split reader's weight and threshold are fitted for
    this model on the world's TRAINING records (true captions against their foils), never on benchmark items.

    The sources only fine-tuning recipes add (generator prompts `t2i`, referring crops `crops`) are left out of
    the fit: a training-free route's numbers must not move because a fine-tuning recipe trains on them. With
    the generator prompts in the fit the base's reader chose w = 1.4 instead of 0 and its negated retrieval
    R@5 fell 0.514 -> 0.220 (docs/testbed.md)."""
    from PIL import Image

    from negation_encoder.data import read_records

    data = {src: path for src, path in data.items() if src not in FINE_TUNING_ONLY_SOURCES}
    if not data:
        raise ValueError(f"the split reader needs records other than the {FINE_TUNING_ONLY_SOURCES} sources to be "
                         "fitted on")
    records = [r for path in data.values() for r in read_records(path)]
    scorer = SplitScorer.fit_on_records(model, tokenizer, processor, records,
                                        lambda k: Image.open(Path(images) / k).convert("RGB"), seed=seed,
                                        data=sorted(Path(p).name for p in data.values()))
    metrics = B.evaluate(model, tokenizer, processor, suite, scorer=scorer)
    return metrics, scorer


def fit_summary(scorer: SplitScorer) -> dict:
    """The reader's numbers as results.json reports them."""
    return {"weight": scorer.weight, "offset": scorer.offset, "train_accuracy": scorer.fit.get("train_accuracy"),
            "items": scorer.fit.get("items")}


def world_results(metrics: dict) -> dict:
    """Testbed METRICS under their registered `world_*` keys (negation_encoder.results)."""
    return {R.world_key(k): v for k, v in metrics.items()}


@dataclass(frozen=True)
class SharedInputs:
    """What every recipe run of one demo or comparison shares: the generated data per data variant
    (`Recipe.data_variant`), the world's training images, the benchmark suite, the base model's tokenizer,
    image processor and scores (the baseline in each run's results), and the settings every recipe
    trains with."""

    datasets: Mapping[str, Mapping[str, str | Path]]
    images: str | Path
    suite: B.Suite
    tokenizer: Any
    processor: Any
    base_metrics: dict | None = None
    base_split_metrics: dict | None = None
    base: str | Path = BASE_DIR
    steps: int | None = None
    cache_dir: str | Path = ""

    def data(self, recipe: Recipe) -> Mapping[str, str | Path]:
        """The data `recipe` trains on."""
        return self.datasets[recipe.data_variant]


def recipe_config(recipe: Recipe, shared: SharedInputs, *, out: str | Path, seed: int = 0):
    """The TrainConfig `run_recipe` trains: the recipe on the world's data, and for a seg recipe the world's
    frozen CLIPSeg and referring records on training scenes (made once, cached)."""
    seg_kw = {}
    if recipe.seg:
        from .instruments.segmenter import SEG_DIR
        from .world.datagen import make_referring_data

        seg_kw = {"seg_data": make_referring_data(Path(shared.images).parent / "referring"), "seg_model": SEG_DIR}
    return recipe.to_config(base=shared.base, data=shared.data(recipe), images=shared.images, out=out, seed=seed,
                            steps=shared.steps, cache_dir=shared.cache_dir, **seg_kw)


def run_recipe(recipe: Recipe, *, shared: SharedInputs, out: str | Path, seed: int = 0, overwrite: bool = False,
               split: bool = True, progress: bool = True, resume: bool = False) -> RecipeRun:
    """Fine-tune `recipe` into `out` (`resume`: continue its newest checkpoint there), then evaluate the export."""
    from transformers import CLIPModel

    start = time.perf_counter()
    cfg = recipe_config(recipe, shared, out=out, seed=seed)
    result = train(cfg, resume=resume, overwrite=overwrite, progress=progress)
    model = CLIPModel.from_pretrained(result.model_dir).eval()  # what users will load
    tokenizer, processor, suite = shared.tokenizer, shared.processor, shared.suite
    metrics, details = B.evaluate(model, tokenizer, processor, suite, return_details=True)
    split_metrics = scorer = None
    if split:
        split_metrics, scorer = split_evaluation(model, tokenizer, processor, suite, shared.data(recipe),
                                                 shared.images, seed)
    base_metrics, base_split_metrics = shared.base_metrics, shared.base_split_metrics
    results = R.make_results(
        world_results(metrics), split=world_results(split_metrics) if split_metrics else None,
        baseline=world_results(base_metrics) if base_metrics else None,
        baseline_split=world_results(base_split_metrics) if base_split_metrics else None,
        baseline_model="negation-encoder testbed world CLIP", meta={"recipe": recipe.name, "seed": seed,
                                                                    "benchmark": "testbed twins, seed 12345"})
    write_eval_results(result.model_dir, results, split_scorer=scorer)
    return RecipeRun(recipe.name, seed, result.model_dir, metrics, details, time.perf_counter() - start, result,
                     split_metrics, fit_summary(scorer) if scorer else None)
