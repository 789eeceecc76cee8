"""`eval_results.json`: ONE schema for every encoder checkpoint, and the one registry of what each key means.

Whoever scores an encoder (`negenc eval` on the papers' files, the testbed's benchmark twins) writes the
same shape (docs/design.md "Machine-readable results"):

    {"schema": "negation-encoder/eval-results/v1",
     "<key>": value, ...          this encoder, plain cosine scoring; only keys registered below
     "<key>_items": n, ...        how many items each number averages (optional)
     "split": {"<key>": value}    the same encoder read by its split scorer (optional)
     "baseline": {"model": ..., "<key>": value, "split": {...}}   the encoder it was fine-tuned from (optional)
     "meta": {...}}               how it was scored (free-form)

`REGISTRY` says which dataset, task and metric each key is, so `negenc publish` writes `model-index`
entries with the datasets' real names and never guesses: the papers' benchmarks (`dataset_type` is the
dataset's Hub id where one exists, else the repository that released the file) and the testbed's twins
(`world_*`, dataset `negation-encoder/testbed`). An unregistered number is refused when results are made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import DataError

TASK_MATCHING = "zero-shot-image-classification"  # caption choice for one image: the closest Hub task id
TASK_RETRIEVAL = "text-to-image-retrieval"


@dataclass(frozen=True)
class CardInfo:
    dataset_name: str
    dataset_type: str
    task_type: str
    task_name: str
    metric_name: str
    metric_type: str = "accuracy"
    dataset_split: str = "test"
    dataset_config: str | None = None  # tells apart files of one source (the card groups by type + config)


def _mcq(name: str, source: str, config: str) -> dict[str, CardInfo]:
    label = {"": "accuracy", "_positive": "accuracy (positive template)",
             "_negative": "accuracy (negative template)", "_hybrid": "accuracy (hybrid template)"}
    return {f"negbench_mcq_{source}{suffix}": CardInfo(name, "m1k2zoo/negbench", TASK_MATCHING,
                                                       "Negated multiple-choice caption selection", metric,
                                                       dataset_config=config)
            for suffix, metric in label.items()}


def _recall(prefix: str, name: str, dataset_type: str, task_name: str, config: str | None = None) -> dict[str, CardInfo]:
    return {f"{prefix}_r{k}": CardInfo(name, dataset_type, TASK_RETRIEVAL, task_name, f"Recall@{k}", f"recall@{k}",
                                       dataset_config=config)
            for k in (1, 5, 10)}


BENCHMARK_CARD_INFO: dict[str, CardInfo] = {
    "valse_existence": CardInfo("VALSE existence", "Heidelberg-NLP/VALSE", TASK_MATCHING,
                                "Existence caption vs foil", "pairwise accuracy (acc_r)", dataset_config="existence"),
    "negrefcocog": CardInfo("NegRefCOCOg", "parkquasar/NegationCLIP", "zero-shot-object-detection",
                            "Negated referring expression box selection", "accuracy", dataset_split="test"),
    **_mcq("NegBench MCQ COCO (val2017)", "coco", "coco_val2017"),
    **_mcq("NegBench MCQ VOC2007", "voc", "voc2007"),
    **_recall("negbench_negated", "NegBench negated retrieval COCO (val2017)", "m1k2zoo/negbench",
              "Negated text-to-image retrieval", "negated"),
    **_recall("negbench_plain", "NegBench retrieval COCO (val2017)", "m1k2zoo/negbench", "Text-to-image retrieval",
              "plain"),
    **_recall("coco", "COCO Karpathy test", "yerevann/coco-karpathy", "Text-to-image retrieval"),
    "zeroshot_top1": CardInfo("ImageNet-style zero-shot", "ILSVRC/imagenet-1k", "zero-shot-image-classification",
                              "Zero-shot classification", "top-1 accuracy", dataset_split="validation"),
}

# The testbed's benchmark twins (negation_testbed.world.twins.METRIC_KEYS), under a `world_` prefix. Each twin
# is its own dataset config of the testbed dataset, so the card gives it its own model-index entry.
WORLD_DATASET = "negation-encoder/testbed"
WORLD_SPLIT = "benchmark twins (seed 12345)"
WORLD_TWINS: dict[str, str] = {  # dataset config -> what the twin is (the dataset name says it after the world)
    "world-existence": "existence twin", "world-mcq": "MCQ twin", "world-pairwise": "referring-expression twin",
    "world-retrieval-negated": "negated retrieval twin",
    "world-retrieval-negated-groups": "negated retrieval twin, counterfactual groups",
    "world-retrieval-plain": "plain retrieval twin", "world-heldout-existence": "held-out-cue existence twin",
    "world-heldout-mcq": "held-out-cue MCQ twin", "world-zeroshot": "zero-shot twin",
}
WORLD_METRICS: dict[str, tuple[str, str, str, str]] = {  # metric -> (twin config, task name, metric name, task type)
    "existence": ("world-existence", "Existence caption vs foil (VALSE-style)", "pairwise accuracy (acc_r)",
                  TASK_MATCHING),
    "mcq": ("world-mcq", "Negated multiple choice (NegBench wording)", "accuracy", TASK_MATCHING),
    "mcq_positive": ("world-mcq", "Negated multiple choice (NegBench wording)", "accuracy (positive template)",
                     TASK_MATCHING),
    "mcq_negative": ("world-mcq", "Negated multiple choice (NegBench wording)", "accuracy (negative template)",
                     TASK_MATCHING),
    "mcq_hybrid": ("world-mcq", "Negated multiple choice (NegBench wording)", "accuracy (hybrid template)",
                   TASK_MATCHING),
    "pairwise": ("world-pairwise", "Negated referring expression, two objects", "referred-object accuracy",
                 TASK_MATCHING),
    "retrieval_negated_r5": ("world-retrieval-negated", "Negated text-to-image retrieval",
                             "Recall@5 (any valid image)", TASK_RETRIEVAL),
    "retrieval_negated_group_top1": ("world-retrieval-negated-groups", "Negated retrieval among counterfactuals",
                                     "group top-1 accuracy", TASK_RETRIEVAL),
    "retrieval_plain_r5": ("world-retrieval-plain", "Text-to-image retrieval", "Recall@5", TASK_RETRIEVAL),
    "heldout_existence": ("world-heldout-existence", "Existence with held-out cue words",
                          "pairwise accuracy (acc_r), held-out cues", TASK_MATCHING),
    "heldout_mcq": ("world-heldout-mcq", "Multiple choice with held-out cue words", "accuracy, held-out cues",
                    TASK_MATCHING),
    "zeroshot": ("world-zeroshot", "Zero-shot classification", "top-1 accuracy", TASK_MATCHING),
}
BENCHMARK_CARD_INFO.update({
    f"world_{k}": CardInfo(f"negation-encoder testbed world: {WORLD_TWINS[twin]}", WORLD_DATASET, task_type, task,
                           metric, "recall@5" if "r5" in k else "accuracy", dataset_split=WORLD_SPLIT,
                           dataset_config=twin)
    for k, (twin, task, metric, task_type) in WORLD_METRICS.items()})
REGISTRY = BENCHMARK_CARD_INFO


def card_entry(info: CardInfo) -> tuple:
    """What huggingface_hub groups a card's results by (`EvalResult.unique_identifier`): results sharing it
    are written as ONE model-index entry under the first one's task and dataset names."""
    return (info.task_type, info.dataset_type, info.dataset_config, info.dataset_split)


def check_card_entries(registry: dict[str, CardInfo]) -> None:
    """Refuse a registry whose keys would share a model-index entry without sharing its task and dataset
    names, or would sit in one entry under one metric name: a reader of the card could not tell them apart."""
    entries: dict[tuple, list[str]] = {}
    for key, info in registry.items():
        entries.setdefault(card_entry(info), []).append(key)
    for keys in entries.values():
        first = registry[keys[0]]
        clash = [k for k in keys[1:] if (registry[k].task_name, registry[k].dataset_name)
                 != (first.task_name, first.dataset_name)]
        if clash:
            raise ValueError(f"result keys {keys[0]} and {', '.join(clash)} would share one model-index entry but "
                             "name different tasks or datasets; give each benchmark its own dataset_config")
        names = [registry[k].metric_name for k in keys]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"result keys {', '.join(keys)} share a model-index entry and metric name(s) "
                             f"{', '.join(twice)}; each needs a metric name of its own")


check_card_entries(REGISTRY)
# Diagnostics written beside the headline numbers but never published as model-index entries:
# which template NegBench's wrong picks had (share of wrong answers).
DIAGNOSTIC_KEYS = frozenset(f"negbench_mcq_{src}_wrong_picked_{t}" for src in ("coco", "voc")
                            for t in ("positive", "negative", "hybrid"))
COUNT_SUFFIXES = ("_items", "_images", "_classes")
SCHEMA = "negation-encoder/eval-results/v1"
_RESERVED = ("schema", "split", "baseline", "meta")


def world_key(metric: str) -> str:
    """The registered key of a testbed twin metric ('mcq' -> 'world_mcq')."""
    key = f"world_{metric}"
    if key not in REGISTRY:
        raise KeyError(f"{metric!r} is not a testbed metric; expected one of {', '.join(WORLD_METRICS)}")
    return key


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _check_metrics(metrics: dict, where: str) -> dict:
    bad = [k for k in metrics if k not in REGISTRY and k not in DIAGNOSTIC_KEYS and not k.endswith(COUNT_SUFFIXES)]
    if bad:
        raise DataError(f"{where}: unregistered result key(s) {', '.join(sorted(bad))}; register them in "
                         "negation_encoder.results.REGISTRY")
    wrong = [k for k, v in metrics.items() if not _is_number(v)]
    if wrong:
        raise DataError(f"{where}: key(s) {', '.join(wrong)} must be numbers (or null), got "
                         f"{', '.join(type(metrics[k]).__name__ for k in wrong)}")
    return dict(metrics)


def make_results(metrics: dict, *, split: dict | None = None, baseline: dict | None = None,
                 baseline_split: dict | None = None, baseline_model: str | None = None, meta: dict | None = None) -> dict:
    """An eval_results.json object in the one schema (keys checked against `REGISTRY`)."""
    out: dict = {"schema": SCHEMA, **_check_metrics(metrics, "results")}
    if split:
        out["split"] = _check_metrics(split, "split results")
    if baseline:
        out["baseline"] = {"model": baseline_model, **_check_metrics(baseline, "baseline results")}
        if baseline_split:
            out["baseline"]["split"] = _check_metrics(baseline_split, "baseline split results")
    if meta:
        out["meta"] = meta
    return out


def headline(results: dict | None) -> dict[str, float]:
    """The registered metric values of an eval_results.json object (this encoder, plain scoring)."""
    return {k: results[k] for k in REGISTRY if results and _is_number(results.get(k)) and results.get(k) is not None}


def read_results(path) -> dict | None:
    """An encoder folder's eval_results.json, checked against the schema; None when there is none."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    obj = json.loads(path.read_text(encoding="utf-8-sig"))
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise DataError(f"{path}: not an eval_results.json of schema {SCHEMA!r} (got "
                         f"{obj.get('schema') if isinstance(obj, dict) else type(obj).__name__!r})")
    _check_metrics({k: v for k, v in obj.items() if k not in _RESERVED}, str(path))
    return obj


def card_eval_results(results: dict) -> list:
    """`huggingface_hub.EvalResult`s for every registered key with a finite number (None/NaN left out)."""
    from huggingface_hub import EvalResult

    out = []
    for key, info in REGISTRY.items():
        value = results.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            continue
        out.append(EvalResult(task_type=info.task_type, task_name=info.task_name, dataset_type=info.dataset_type,
                              dataset_name=info.dataset_name, dataset_split=info.dataset_split,
                              dataset_config=info.dataset_config,
                              metric_type=info.metric_type, metric_name=info.metric_name,
                              metric_value=round(float(value), 4)))
    return out


def _fmt(value) -> str:
    if value is None:
        return "n/a (no items)"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_markdown(results: dict) -> str:
    """`summary.md`: one row per scored key, then what was skipped and how it was scored."""
    meta = results.get("meta", {})
    split = results.get("split") or {}
    rows = ["| key | dataset | metric | value | " + ("split scorer | " if split else "") + "items |",
            "|---|---|---|---:|" + ("---:|" if split else "") + "---:|"]
    for key, info in REGISTRY.items():
        if key not in results:
            continue
        stem = key.rsplit("_r", 1)[0] if key.endswith(("_r1", "_r5", "_r10")) else key.removesuffix("_top1")
        items = results.get(f"{key}_items", results.get(f"{stem}_items", ""))
        cell = f" {_fmt(split[key]) if key in split else ''} |" if split else ""
        rows.append(f"| `{key}` | {info.dataset_name} | {info.metric_name} | {_fmt(results[key])} |{cell} {items} |")
    sc = meta.get("split_scorer") or {}
    scoring = f"cosine similarity; split scorer (w = {sc.get('weight')}, b = {sc.get('offset')}) in its own column" \
        if split else "cosine similarity"
    lines = [f"# Encoder benchmarks: {meta.get('model', '?')}", "", f"Data root: `{meta.get('data_root', '?')}`. "
             f"Scoring: {scoring}. Seconds: {meta.get('seconds', 0):.1f}.", "", *rows, ""]
    benches = meta.get("benchmarks", {})
    if benches:
        lines += ["| set | file | images under | items | skipped (missing images / malformed rows) | filtered |",
                  "|---|---|---|---:|---:|---:|"]
        lines += [f"| `{k}` | `{b['file']}` | `{b['images']}` | {b['items']} | "
                  f"{b['skipped_missing_images']} / {b['skipped_malformed_rows']} | {b['filtered']} |"
                  for k, b in benches.items()]
        lines.append("")
    for key, reason in meta.get("skipped_benchmarks", {}).items():
        lines.append(f"- skipped `{key}`: {reason}")
    return "\n".join(lines).rstrip() + "\n"


# The packages whose versions decide the numbers (recorded in every results file; constraints.txt pins them)
PROVENANCE_PACKAGES = ("torch", "transformers", "diffusers", "accelerate", "huggingface_hub", "safetensors", "numpy")


def package_versions() -> dict[str, str | None]:
    """python and each of `PROVENANCE_PACKAGES` as installed (None for one that is not)."""
    import platform
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    import platform
    from contextlib import suppress

    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:  # no /proc: below
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict:
    """The CPU kind, the GPU kind (torch.cuda's device name; None without CUDA) and the CUDA version."""
    import torch

    gpu = torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "gpu": gpu, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}


def provenance(command: str | None = None) -> dict:
    """Where a result came from: the package version, the git commit of the code (and whether the
    checkout had uncommitted changes), the command, the torch thread count, the time, the versions of
    python and the libraries that decide the numbers (`versions`), and the CPU / GPU it ran on
    (`hardware`). Written into every results file the docs' tables are generated from, so a table says
    which commit and which install made it. Files written before `versions` and `hardware` existed still
    render: readers take every key as optional."""
    import datetime
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from . import __version__

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"version": __version__, "commit": commit, "dirty": bool(dirty) if dirty is not None else None,
            "command": command or " ".join(["negenc", *sys.argv[1:]]), "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": package_versions(), "hardware": hardware()}
