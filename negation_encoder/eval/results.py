"""eval_results.json keys -> model-card `model-index` entries and the human summary table.

`negenc eval` writes flat headline keys (DESIGN.md "Machine-readable results"); this module is the one
place that says which dataset, task and metric each key is, so `negenc publish` can write
`model-index` entries with the datasets' real names. `dataset_type` is the dataset's Hub id where
one exists, else the repository that released the file (as the card spec allows any identifier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
                                "Existence caption vs foil", "pairwise accuracy (acc_r)"),
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
HEADLINE_KEYS = ("valse_existence", "negrefcocog", "negbench_mcq_coco", "negbench_mcq_voc", "negbench_negated_r5",
                 "negbench_plain_r5", "coco_r5", "zeroshot_top1")


def has_benchmark_keys(results: dict | None) -> bool:
    """True for an eval_results.json written by `negenc eval` (not the testbed's metrics)."""
    return bool(results) and any(k in results for k in BENCHMARK_CARD_INFO)


def card_eval_results(results: dict) -> list:
    """`huggingface_hub.EvalResult`s for every known key with a finite number (None/NaN are left out)."""
    from huggingface_hub import EvalResult

    out = []
    for key, info in BENCHMARK_CARD_INFO.items():
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
    rows = ["| key | dataset | metric | value | items |", "|---|---|---|---:|---:|"]
    for key, info in BENCHMARK_CARD_INFO.items():
        if key not in results:
            continue
        stem = key.rsplit("_r", 1)[0] if key.endswith(("_r1", "_r5", "_r10")) else key.removesuffix("_top1")
        items = results.get(f"{key}_items", results.get(f"{stem}_items", ""))
        rows.append(f"| `{key}` | {info.dataset_name} | {info.metric_name} | {_fmt(results[key])} | {items} |")
    scoring = f"split scorer, w = {meta.get('split_weight')}" if meta.get("split_scoring") else "cosine similarity"
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
