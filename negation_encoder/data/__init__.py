"""Negation data: the NegationRecord format and its JSONL I/O, loaders, backends and pipelines."""

from .backends import RewriteRequest, TextLLM, VisionLLM
from .coco import load_coco_captions, load_vqa_no_items
from .pipelines import PIPELINES, CaptionItem, PipelineConfig, PipelineStats, QAItem, run_pipeline
from .records import (
    NEGATION_TYPES,
    NegationRecord,
    RecordError,
    RecordWriter,
    iter_records,
    read_records,
    write_records,
)
from .shards import merge_shards, parse_shard, shard_items
from .summary import summarize_records
from .validation import check_caption

__all__ = [
    "NEGATION_TYPES", "PIPELINES", "CaptionItem", "NegationRecord", "PipelineConfig", "PipelineStats", "QAItem",
    "RecordError", "RecordWriter", "RewriteRequest", "TextLLM", "VisionLLM", "check_caption", "iter_records",
    "load_coco_captions", "load_vqa_no_items", "merge_shards", "parse_shard", "read_records", "run_pipeline",
    "shard_items", "summarize_records", "write_records",
]
