"""Text-to-image retrieval (NegBench CSVs, COCO Karpathy test): every caption queries the gallery of
all the file's images; Recall@1/5/10 of its own image (`scoring.recall_at_k_from_sims`)."""

from __future__ import annotations

from ..datasets import Loaded, RetrievalSet
from ..encoder import Encoder
from ..scoring import recall_at_k_from_sims, target_ranks
from .base import BenchOutput, number

KS = (1, 5, 10)


def image_keys(data: Loaded[RetrievalSet]) -> list[str]:
    return list(data.items[0].gallery)


def evaluate(data: Loaded[RetrievalSet], encoder: Encoder, key: str = "coco") -> BenchOutput:
    rs = data.items[0]
    image = encoder.images(rs.gallery)
    sims = encoder.matrix(rs.queries, image)
    recall = recall_at_k_from_sims(sims, rs.targets, KS)
    ranks = target_ranks(sims, rs.targets).tolist() if rs.queries else []
    top = sims.topk(min(5, len(rs.gallery)), dim=1).indices.tolist() if rs.queries else []
    metrics: dict[str, float | int | None] = {f"{key}_r{k}": number(v) for k, v in recall.items()}
    metrics[f"{key}_items"] = len(rs.queries)
    metrics[f"{key}_images"] = len(rs.gallery)
    preds = [{"id": qid, "query": q, "target": rs.gallery[t], "rank": r, "top5": [rs.gallery[i] for i in tp]}
             for qid, q, t, r, tp in zip(rs.query_ids, rs.queries, rs.targets, ranks, top, strict=True)]
    return BenchOutput(metrics, preds)
