"""Encoder benchmarks: the scoring rules of docs/design.md, shared by the testbed and real-data loaders."""

from ..split_scorer import (
    SplitEmbeddings,
    SplitScorer,
    WeightFit,
    concept_prompt,
    encode_split,
    fit_split_weight,
    split_paired,
    split_similarity,
)
from .runner import EvalConfig, run
from .scoring import (
    MCQ_TEMPLATES,
    existence_accuracy,
    group_top1_accuracy,
    mcq_scores,
    pairwise_accuracy,
    recall_at_k,
    recall_at_k_any,
    recall_at_k_from_sims,
    target_ranks,
    zeroshot_accuracy,
    zeroshot_predictions,
)

__all__ = [
    "EvalConfig",
    "run",
    "MCQ_TEMPLATES",
    "SplitEmbeddings",
    "SplitScorer",
    "WeightFit",
    "concept_prompt",
    "encode_split",
    "fit_split_weight",
    "split_paired",
    "split_similarity",
    "existence_accuracy",
    "group_top1_accuracy",
    "mcq_scores",
    "pairwise_accuracy",
    "recall_at_k",
    "recall_at_k_any",
    "recall_at_k_from_sims",
    "target_ranks",
    "zeroshot_accuracy",
    "zeroshot_predictions",
]
