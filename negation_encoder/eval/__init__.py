"""Encoder benchmarks: the scoring rules of DESIGN.md, shared by the testbed and real-data loaders."""

from .scoring import (
    MCQ_TEMPLATES,
    existence_accuracy,
    mcq_scores,
    pairwise_accuracy,
    recall_at_k,
    zeroshot_accuracy,
)

__all__ = [
    "MCQ_TEMPLATES",
    "existence_accuracy",
    "mcq_scores",
    "pairwise_accuracy",
    "recall_at_k",
    "zeroshot_accuracy",
]
