"""Referring segmentation with negation: CLIPSeg's fixed-interval metrics (mIoU, IoU_BIN, fgIoU, AP),
RefCOCOg / PhraseCut / JSONL loaders, and a resumable runner for the original and swapped CLIPSeg.

The metric rules are docs/design.md's "mIoU / IoU_BIN"; `integrations.swap_clipseg_text_encoder` puts the
encoder into CLIPSeg. `negenc seg eval` / `negenc seg compare` are the command line over this API.
"""

from .datasets import (
    DATASETS,
    DatasetConfig,
    SegDataset,
    SegSample,
    load_dataset,
    load_jsonl,
    load_phrasecut,
    load_refcocog,
)
from .masks import (
    MaskFormatError,
    coco_polygons_to_mask,
    coco_segmentation_to_mask,
    decode_rle,
    load_png_mask,
    phrasecut_polygons_to_mask,
    rle_counts_from_string,
)
from .metrics import (
    THRESHOLDS,
    FixedIntervalMetrics,
    average_precision,
    confusion_histograms,
    counts_from_histograms,
    probability_histograms,
    sample_iou,
    simpson,
)
from .runner import CompareResult, RunResult, SegEvalConfig, compare, evaluate, per_sample_ious, run

__all__ = [
    "DATASETS", "run", "THRESHOLDS", "CompareResult", "DatasetConfig", "FixedIntervalMetrics", "MaskFormatError",
    "RunResult", "SegDataset", "SegEvalConfig", "SegSample", "average_precision",
    "coco_polygons_to_mask", "coco_segmentation_to_mask", "compare", "confusion_histograms",
    "counts_from_histograms", "decode_rle", "evaluate", "load_dataset", "load_jsonl", "load_phrasecut",
    "load_png_mask", "load_refcocog", "per_sample_ious",
    "probability_histograms",
    "phrasecut_polygons_to_mask", "rle_counts_from_string", "sample_iou", "simpson",
]
