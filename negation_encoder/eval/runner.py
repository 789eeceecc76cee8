"""The engine of `negenc eval`: check every input, then load the model once and score each benchmark.

Order matters: all files are read and every row and image checked first (`datasets`), so a typo in a
path fails in seconds with one line; only then are weights loaded and images embedded. Results go to
`OUT/eval_results.json` (flat headline keys + `meta`), `OUT/predictions/<bench>.jsonl` and `OUT/summary.md`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from . import bench
from .datasets import (
    Loaded,
    MissingInput,
    load_imagefolder,
    load_karpathy_coco,
    load_negbench_mcq,
    load_negrefcocog,
    load_retrieval_csv,
    load_valse_existence,
)
from .encoder import DTYPES, Encoder, ScoringConfig, load_model
from .paths import BENCHMARKS, BenchFiles, bench_files
from .results import summary_markdown


@dataclass(frozen=True)
class Part:
    """One scored file of a benchmark: its result-key prefix, loader, scorer and which file it reads."""

    key: str
    loader: Callable[..., Loaded]
    evaluate: Callable[..., bench.BenchOutput]
    file_attr: str = "file"


BENCH_PARTS: dict[str, tuple[Part, ...]] = {
    "valse": (Part("valse_existence", load_valse_existence, bench.existence.evaluate),),
    "negrefcocog": (Part("negrefcocog", load_negrefcocog, bench.referring.evaluate),),
    "negbench-mcq-coco": (Part("negbench_mcq_coco", load_negbench_mcq, bench.mcq.evaluate),),
    "negbench-mcq-voc": (Part("negbench_mcq_voc", load_negbench_mcq, bench.mcq.evaluate),),
    "negbench-retrieval": (Part("negbench_negated", load_retrieval_csv, bench.retrieval.evaluate),
                           Part("negbench_plain", load_retrieval_csv, bench.retrieval.evaluate, "plain_file")),
    "coco-retrieval": (Part("coco", load_karpathy_coco, bench.retrieval.evaluate),),
    "zeroshot": (Part("zeroshot", load_imagefolder, bench.zeroshot.evaluate),),
}
assert tuple(BENCH_PARTS) == BENCHMARKS


@dataclass
class EvalConfig:
    model: str
    benches: tuple[str, ...]
    data_root: Path
    out: Path
    overrides: dict[str, dict[str, str | None]] = field(default_factory=dict)  # bench -> {file, plain_file, images}
    split_scoring: bool = False
    split_weight: float | None = None
    skip_missing: bool = False
    batch_size: int = 64
    device: str | None = None
    dtype: str = "auto"
    progress: bool = True
    cache_dir: Path | None = None


def parse_benches(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(b.strip() for b in value.split(",") if b.strip()))
    unknown = [b for b in names if b not in BENCH_PARTS]
    if not names or unknown:
        raise InputError(f"--bench: expected a comma-separated list of {','.join(BENCHMARKS)}, "
                         f"got {', '.join(unknown) or repr(value)}")
    return names


def check_config(cfg: EvalConfig) -> None:
    """Argument checks that need no file."""
    if cfg.split_scoring and (cfg.split_weight is None or not math.isfinite(cfg.split_weight) or cfg.split_weight < 0):
        raise InputError("--split-scoring needs --split-weight W, a finite number >= 0 fitted on training data "
                         f"(e.g. with fit_split_weight), got {cfg.split_weight}")
    if not cfg.split_scoring and cfg.split_weight is not None:
        raise InputError("--split-weight is only used with --split-scoring")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if not cfg.data_root.is_dir():
        raise InputError(f"--data-root {cfg.data_root}: not a folder")


@dataclass
class LoadedPart:
    bench: str
    part: Part
    files: BenchFiles
    data: Loaded


def load_all(cfg: EvalConfig, log=print) -> tuple[list[LoadedPart], dict[str, str]]:
    """Read and check every selected file before any compute. Returns the parts to score and, with
    --skip-missing, the reason each skipped part was skipped."""
    parts, skipped = [], {}
    for name in cfg.benches:
        files = bench_files(name, cfg.data_root, cfg.overrides.get(name))
        for part in BENCH_PARTS[name]:
            path = getattr(files, part.file_attr)
            try:
                data = part.loader(path, files.images, skip_missing=cfg.skip_missing)
                if not _items(data):
                    raise MissingInput(f"{path}: no items to score" + (
                        f" ({data.missing_images} missing images, {data.malformed_rows} malformed rows skipped)"
                        if data.skipped else ""))
            except MissingInput as e:
                if not cfg.skip_missing:
                    raise
                skipped[part.key] = str(e)
                log(f"skip {part.key}: {e}")
                continue
            log(f"{part.key}: {len(_items(data))} items from {path} (images under {files.images})"
                + (f", skipped {data.skipped}" if data.skipped else ""))
            parts.append(LoadedPart(name, part, files, data))
    if not parts:
        raise InputError("nothing to evaluate: every selected benchmark was skipped ("
                         + "; ".join(skipped.values()) + ")")
    return parts, skipped


def _items(data: Loaded) -> list:
    """Scored units of a loaded file: items, or the queries / images of a single retrieval or zero-shot set."""
    first = data.items[0] if data.items else None
    if hasattr(first, "queries"):
        return first.queries
    if hasattr(first, "labels"):
        return first.labels
    return data.items


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def run_eval(cfg: EvalConfig, log=print) -> dict:
    """Check, load, score and write. Returns the eval_results dict it wrote."""
    start = time.perf_counter()
    check_config(cfg)
    parts, skipped_benchmarks = load_all(cfg, log)
    loaded = load_model(cfg.model)
    cfg.out.mkdir(parents=True, exist_ok=True)
    cache_dir = cfg.cache_dir or cfg.out / "image_cache"
    encoder = Encoder(loaded, cache_dir, ScoringConfig(cfg.split_scoring, cfg.split_weight), batch_size=cfg.batch_size,
                      device=cfg.device, dtype=cfg.dtype, progress=cfg.progress)
    results: dict = {}
    benchmarks: dict[str, dict] = {}
    predictions: dict[str, list[dict]] = {}
    for lp in parts:
        t0 = time.perf_counter()
        out = lp.part.evaluate(lp.data, encoder, lp.part.key)
        results.update(out.metrics)
        multi = len(BENCH_PARTS[lp.bench]) > 1
        predictions.setdefault(lp.bench, []).extend({"set": lp.part.key, **p} if multi else p for p in out.predictions)
        benchmarks[lp.part.key] = {
            "bench": lp.bench, "file": str(lp.data.file), "images": str(lp.data.images), "items": len(_items(lp.data)),
            "skipped_missing_images": lp.data.missing_images, "skipped_malformed_rows": lp.data.malformed_rows,
            "filtered": lp.data.filtered, "seconds": round(time.perf_counter() - t0, 3)}
        log(f"{lp.part.key}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in out.metrics.items()))
    results["meta"] = {
        "model": loaded.source, "data_root": str(cfg.data_root), "benches": list(cfg.benches),
        "split_scoring": cfg.split_scoring, "split_weight": cfg.split_weight if cfg.split_scoring else None,
        "skip_missing": cfg.skip_missing, "benchmarks": benchmarks,
        "skipped": {k: b["skipped_missing_images"] + b["skipped_malformed_rows"] for k, b in benchmarks.items()},
        "skipped_benchmarks": skipped_benchmarks,
        "device": str(encoder.device), "text_dtype": str(encoder.text_dtype).removeprefix("torch."),
        "image_dtype": str(encoder.image_dtype).removeprefix("torch."), "batch_size": cfg.batch_size,
        "image_cache": {"dir": str(encoder.cache.root), **encoder.cache_counts},
        "seconds": round(time.perf_counter() - start, 3),
    }
    pred_dir = cfg.out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    for name, rows in predictions.items():
        with (pred_dir / f"{name}.jsonl").open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    _write_json(cfg.out / "eval_results.json", results)
    (cfg.out / "summary.md").write_text(summary_markdown(results))
    return results
