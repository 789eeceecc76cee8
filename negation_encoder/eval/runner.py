"""The engine of `negenc eval`: check every input, then load the model once and score each benchmark.

Order matters: all files are read and every row and image checked first (`datasets`), so a typo in a
path fails in seconds with one line; only then are weights loaded and images embedded. Results go to
`OUT/eval_results.json` (flat headline keys + `meta`), `OUT/predictions/<bench>.jsonl` and `OUT/summary.md`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint.sources import check_clip_model
from ..configs import Validated, at_least, collect, option
from ..devices import DTYPES
from ..distributed import Processes, processes
from ..errors import InputError
from ..results import make_results, summary_markdown
from ..runio import RunFolder, atomic_write_json, atomic_write_text
from ..split_scorer import SplitScorer
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
from .encoder import Encoder, check_image_sizes, load_model
from .paths import BENCHMARKS, BenchFiles, bench_files


@dataclass(frozen=True)
class Part:
    """One scored file of a benchmark: its result-key prefix, loader, scorer and which file it reads."""

    key: str
    loader: Callable[..., Loaded]
    evaluate: Callable[..., bench.BenchOutput]
    images: Callable[[Loaded], list[str]]  # the image keys it embeds (checked before any compute)
    file_attr: str = "file"


BENCH_PARTS: dict[str, tuple[Part, ...]] = {
    "valse": (Part("valse_existence", load_valse_existence, bench.existence.evaluate, bench.existence.image_keys),),
    "negrefcocog": (Part("negrefcocog", load_negrefcocog, bench.referring.evaluate, bench.referring.image_keys),),
    "negbench-mcq-coco": (Part("negbench_mcq_coco", load_negbench_mcq, bench.mcq.evaluate, bench.mcq.image_keys),),
    "negbench-mcq-voc": (Part("negbench_mcq_voc", load_negbench_mcq, bench.mcq.evaluate, bench.mcq.image_keys),),
    "negbench-retrieval": (Part("negbench_negated", load_retrieval_csv, bench.retrieval.evaluate, bench.retrieval.image_keys),
                           Part("negbench_plain", load_retrieval_csv, bench.retrieval.evaluate, bench.retrieval.image_keys, "plain_file")),
    "coco-retrieval": (Part("coco", load_karpathy_coco, bench.retrieval.evaluate, bench.retrieval.image_keys),),
    "zeroshot": (Part("zeroshot", load_imagefolder, bench.zeroshot.evaluate, bench.zeroshot.image_keys),),
}
assert tuple(BENCH_PARTS) == BENCHMARKS


@dataclass
class EvalConfig(Validated):
    """One `negenc eval` run. Every value is checked here, so the Python API refuses what the CLI does."""

    model: str = option(help="CLIPModel folder (e.g. <train out>/model) or Hub model id")
    benches: tuple[str, ...] = option(help=f"comma list of benchmarks: {','.join(BENCHMARKS)}", flag="--bench")
    data_root: Path = option(help="folder holding the benchmarks' files in the default layout")
    out: Path = option(help="output folder: eval_results.json, predictions/, summary.md")
    overrides: dict = option({}, cli=False)  # bench -> {file, plain_file, images} (the CLI's per-file flags)
    split_scoring: bool = option(False, "also score captions with the split scorer (affirmative part minus w x "
                                 "negated concepts), written under `split` beside the plain numbers; its weight "
                                 "and offset come from the model folder's split_scorer.json unless --split-weight "
                                 "is given")
    split_weight: float | None = option(None, "w for --split-scoring, fitted on training data (never on benchmark "
                                        "items); overrides split_scorer.json")
    split_offset: float = option(0.0, "the offset b fitted with --split-weight")
    skip_missing: bool = option(False, "skip missing images, malformed rows and absent files (counted in the "
                                "results) instead of stopping with exit 2")
    batch_size: int = option(64, "images / texts per forward pass")
    device: str = option("auto", "auto (CUDA if available), cpu, cuda, cuda:N")
    dtype: str = option("auto", "text-tower precision (auto: fp16 on CUDA, fp32 on CPU); image embeddings follow "
                        "the training cache's rule", choices=DTYPES)
    progress: bool = option(True, cli=False)
    cache_dir: Path | None = option(None, "image-embedding cache root (default OUT/image_cache); one subfolder per "
                                    "model fingerprint")
    resume: bool = option(False, "continue a run in --out: benchmarks already scored there are kept")
    overwrite: bool = option(False, "replace the results in --out (eval_results.json, summary.md, predictions/, "
                             "parts/; the image cache is kept)")

    def __post_init__(self) -> None:
        if isinstance(self.benches, str):
            self.benches = parse_benches(self.benches)
        self.benches = tuple(self.benches)
        self.data_root, self.out = Path(self.data_root).expanduser(), Path(self.out).expanduser()
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser()
        super().__post_init__()

    def problems(self) -> list[str]:
        p = collect(at_least(self, "batch_size", 1), at_least(self, "split_weight", 0, allow_none=True))
        unknown = [b for b in self.benches if b not in BENCH_PARTS]
        if not self.benches or unknown:
            p.append(f"benches must be some of {','.join(BENCHMARKS)}, got {', '.join(unknown) or 'none'}")
        if self.split_weight is not None and not self.split_scoring:
            p.append("split_weight is only used with split_scoring")
        if not math.isfinite(self.split_offset):
            p.append(f"split_offset must be finite, got {self.split_offset}")
        if self.resume and self.overwrite:
            p.append("resume and overwrite contradict each other; pass one")
        return p

    def fingerprint(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {"model": str(self.model), "benches": list(self.benches), "data_root": str(self.data_root),
                "overrides": self.overrides, "split_scoring": self.split_scoring, "split_weight": self.split_weight,
                "split_offset": self.split_offset, "skip_missing": self.skip_missing}


def parse_benches(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(b.strip() for b in value.split(",") if b.strip()))
    unknown = [b for b in names if b not in BENCH_PARTS]
    if not names or unknown:
        raise InputError(f"--bench: expected a comma-separated list of {','.join(BENCHMARKS)}, "
                         f"got {', '.join(unknown) or repr(value)}")
    return names


def resolve_scorer(cfg: EvalConfig) -> SplitScorer | None:
    """The split reader this run scores with: --split-weight if given, else the model folder's
    split_scorer.json (fitted on training data by whoever trained it)."""
    if not cfg.split_scoring:
        return None
    if cfg.split_weight is not None:
        return SplitScorer(cfg.split_weight, cfg.split_offset, fit={"source": "--split-weight"})
    if not Path(cfg.model).expanduser().is_dir():
        raise InputError(f"--split-scoring: {cfg.model} is not a local folder with a split_scorer.json; pass "
                         "--split-weight W (fitted on training data)")
    return SplitScorer.load(Path(cfg.model).expanduser())


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


OWNED = ("eval_results.json", "summary.md", "predictions", "parts", "run_config.json")


def run_eval(cfg: EvalConfig, log=print) -> dict:
    """Check, load, score and write; `negenc eval` is this function. Returns the eval_results it wrote.

    Each scored benchmark part is saved as `parts/<key>.json` as soon as it is done, so `resume=True`
    keeps the parts a killed run finished (with the same settings) and scores only the rest;
    `overwrite=True` replaces the results (not the image cache). A folder holding results is refused
    otherwise. `eval_results.json`, `summary.md` and `predictions/` are written from the parts at the end.

    Under `accelerate launch` / `torchrun` every process runs this, in three shared steps: the images
    of the parts still to score fill the cache (each image once, by whichever process gets its batch),
    the texts the benchmarks ask for (recorded by a planning run on zero embeddings) are embedded in
    batches shared the same way, and the parts are scored round-robin, each process writing the part
    files it scored. The main process alone checks and prepares the folder (and holds its lock), merges
    the parts and writes the results, while the others wait; every process returns those results.
    """
    start = time.perf_counter()
    procs = processes()
    if not procs.is_main:
        log = _quiet
    check_clip_model(cfg.model, "--model", " (a negation-encoder checkpoint folder is one)")  # before any data
    folder = RunFolder(cfg.out, OWNED)
    procs.on_main(lambda: folder.check(cfg.resume, cfg.overwrite, cfg.fingerprint()))
    if not cfg.data_root.is_dir():
        raise InputError(f"--data-root {cfg.data_root}: not a folder")
    parts, skipped_benchmarks = load_all(cfg, log)
    scorer = resolve_scorer(cfg)
    check_image_sizes([k for lp in parts for k in lp.part.images(lp.data)], cfg.model)
    loaded = load_model(cfg.model)
    with contextlib.ExitStack() as held:
        def lock_and_prepare() -> None:  # the main process holds the folder; the others see its lock
            held.enter_context(folder.lock())
            folder.prepare(cfg.resume, cfg.overwrite, cfg.fingerprint())

        procs.on_main(lock_and_prepare)
        cache_dir = cfg.cache_dir or cfg.out / "image_cache"
        encoder = Encoder(loaded, cache_dir, scorer, batch_size=cfg.batch_size, device=procs.device(cfg.device),
                          dtype=cfg.dtype, progress=cfg.progress and procs.is_main)
        done = {lp.part.key: _read_part(cfg.out, lp.part.key) for lp in parts}
        for lp in parts:
            if done[lp.part.key] is not None:
                log(f"{lp.part.key}: kept from the earlier run (--resume)")
        todo = [lp for lp in parts if done[lp.part.key] is None]
        with encoder.plan_texts() as asked:
            for lp in todo:
                for reader in _readers(scorer):
                    with encoder.reading(reader):
                        lp.part.evaluate(lp.data, encoder, lp.part.key)
        encoder.cache_images([k for lp in todo for k in lp.part.images(lp.data)], procs)
        encoder.embed_texts(asked, procs)
        scored = {}
        for lp in procs.share(todo):
            scored[lp.part.key] = _score_part(lp, encoder, scorer)
            atomic_write_json(cfg.out / "parts" / f"{lp.part.key}.json", scored[lp.part.key])
        for got in procs.gather(scored):
            done.update(got)
        for lp in todo:
            log(f"{lp.part.key}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in done[lp.part.key]["metrics"].items()))
        return procs.on_main(lambda: _write_results(cfg, parts, done, skipped_benchmarks, loaded.source, scorer,
                                                    encoder, procs, start))


def _readers(scorer: SplitScorer | None) -> list[SplitScorer | None]:
    """Plain cosine always (the schema's top-level numbers), then the split reader when one is asked for."""
    return [None] if scorer is None else [None, scorer]


def _score_part(lp: LoadedPart, encoder: Encoder, scorer: SplitScorer | None = None) -> dict:
    """One benchmark part scored: what `parts/<key>.json` holds (plain cosine; with a split reader, its
    numbers and predictions too, under `split`)."""
    t0 = time.perf_counter()
    with encoder.reading(None):
        out = lp.part.evaluate(lp.data, encoder, lp.part.key)
    split = None
    if scorer is not None:
        with encoder.reading(scorer):
            got = lp.part.evaluate(lp.data, encoder, lp.part.key)
        split = {"metrics": got.metrics, "predictions": got.predictions}
    return {"metrics": out.metrics, "predictions": out.predictions, "split": split, "info": {
        "bench": lp.bench, "file": str(lp.data.file), "images": str(lp.data.images),
        "items": len(_items(lp.data)), "skipped_missing_images": lp.data.missing_images,
        "skipped_malformed_rows": lp.data.malformed_rows, "filtered": lp.data.filtered,
        "seconds": round(time.perf_counter() - t0, 3)}}


def _write_results(cfg: EvalConfig, parts: list[LoadedPart], done: dict[str, dict], skipped_benchmarks: dict,
                   source: str, scorer: SplitScorer | None, encoder: Encoder, procs: Processes,
                   start: float) -> dict:
    """The merge (main process): eval_results.json, summary.md and predictions/ from every part."""
    metrics: dict = {}
    split: dict = {}
    predictions: dict[str, list[dict]] = {}
    for lp in parts:
        part = done[lp.part.key]
        metrics.update(part["metrics"])
        multi = len(BENCH_PARTS[lp.bench]) > 1
        predictions.setdefault(lp.bench, []).extend(
            {"set": lp.part.key, **p} if multi else p for p in part["predictions"])
        if part.get("split"):
            split.update({k: v for k, v in part["split"]["metrics"].items() if not k.endswith("_items")})
            predictions.setdefault(f"{lp.bench}.split", []).extend(
                {"set": lp.part.key, **p} if multi else p for p in part["split"]["predictions"])
    benchmarks = {lp.part.key: done[lp.part.key]["info"] for lp in parts}
    meta = {
        "model": source, "data_root": str(cfg.data_root), "benches": list(cfg.benches),
        "split_scoring": cfg.split_scoring,
        "split_scorer": None if scorer is None else {"weight": scorer.weight, "offset": scorer.offset,
                                                     "template": scorer.template, "fit": scorer.fit},
        "skip_missing": cfg.skip_missing, "benchmarks": benchmarks,
        "skipped": {k: b["skipped_missing_images"] + b["skipped_malformed_rows"] for k, b in benchmarks.items()},
        "skipped_benchmarks": skipped_benchmarks,
        "device": str(encoder.device), "text_dtype": str(encoder.text_dtype).removeprefix("torch."),
        "image_dtype": str(encoder.image_dtype).removeprefix("torch."), "batch_size": cfg.batch_size,
        "image_cache": {"dir": str(encoder.cache.root), **encoder.cache_counts}, "processes": procs.world,
        "seconds": round(time.perf_counter() - start, 3),
    }
    results = make_results(metrics, split=split or None, meta=meta)
    for name, rows in predictions.items():
        atomic_write_text(cfg.out / "predictions" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(cfg.out / "eval_results.json", results, sort_keys=False)
    atomic_write_text(cfg.out / "summary.md", summary_markdown(results))
    return results


def _quiet(*_args, **_kwargs) -> None:
    """The log of a process that is not the main one: the main process speaks for the run."""


def _read_part(out: Path, key: str) -> dict | None:
    path = out / "parts" / f"{key}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a part that cannot be read is scored again


run = run_eval
