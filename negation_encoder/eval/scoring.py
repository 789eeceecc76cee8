"""The benchmarks' scoring rules, written once (docs/design.md, "Evaluation rules").

Pure functions of similarity matrices or embeddings (all cosines of L2-normalised vectors), so the
testbed's twins and the real VALSE / NegRefCOCOg / NegBench / COCO loaders score identically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

MCQ_TEMPLATES = ("positive", "negative", "hybrid")


def existence_accuracy(sim_caption: torch.Tensor, sim_foil: torch.Tensor) -> float:
    """VALSE existence: correct iff sim(image, caption) > sim(image, foil) (strict)."""
    if len(sim_caption) == 0:
        return float("nan")
    return (sim_caption > sim_foil).float().mean().item()


def pairwise_accuracy(sims: Sequence[torch.Tensor], ref_index: Sequence[int]) -> float:
    """NegRefCOCOg: argmax over candidate crops; correct iff it is the referred box."""
    if len(sims) == 0:
        return float("nan")
    correct = [int(torch.argmax(s).item() == r) for s, r in zip(sims, ref_index, strict=True)]
    return sum(correct) / len(correct)


def mcq_scores(sims: torch.Tensor, correct: Sequence[int], templates: Sequence[str],
               option_templates: Sequence[Sequence[str]] | None = None) -> dict[str, float]:
    """NegBench MCQ: argmax over the options. Returns total accuracy, accuracy per correct-answer
    template (NaN where a template has no items; never a division by zero), and, when the template of
    every option is given, the share of wrong picks by the picked option's template."""
    pred = sims.argmax(dim=1).tolist()
    ok = [int(p == c) for p, c in zip(pred, correct, strict=True)]
    out = {"mcq": sum(ok) / len(ok) if ok else float("nan")}
    for t in MCQ_TEMPLATES:
        idx = [i for i, tt in enumerate(templates) if tt == t]
        out[f"mcq_{t}"] = sum(ok[i] for i in idx) / len(idx) if idx else float("nan")
    if option_templates is not None:
        wrong = Counter(option_templates[i][p] for i, (p, c) in enumerate(zip(pred, correct, strict=True)) if p != c)
        total_wrong = sum(wrong.values())
        for t in MCQ_TEMPLATES:
            out[f"mcq_wrong_picked_{t}"] = wrong[t] / total_wrong if total_wrong else 0.0
    return out


def target_ranks(sims: torch.Tensor, target: Sequence[int]) -> torch.Tensor:
    """0-based rank of each query's target among the gallery: (Q, G) scores -> (Q,). Ties count in the
    query's favour (only strictly higher-scoring images rank above the target)."""
    target_t = torch.as_tensor(list(target), dtype=torch.long)
    target_sim = sims[torch.arange(len(target_t)), target_t]
    return (sims > target_sim[:, None]).sum(dim=1)


def recall_at_k_from_sims(sims: torch.Tensor, target: Sequence[int],
                          ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Text-to-image Recall@k from any (Q, G) query-by-image score matrix (cosines or split scores)."""
    rank = target_ranks(sims, target)
    return {k: (rank < k).float().mean().item() if len(rank) else float("nan") for k in ks}


def recall_at_k(text_emb: torch.Tensor, image_emb: torch.Tensor, target: Sequence[int],
                ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Text-to-image Recall@k: the target image ranks in the top k by cosine similarity."""
    return recall_at_k_from_sims(text_emb @ image_emb.T, target, ks)


def zeroshot_predictions(image_emb: torch.Tensor, class_text_emb: torch.Tensor) -> torch.Tensor:
    """(N,) predicted class per image. `class_text_emb` is (C, T, D): T templates per class are
    averaged and re-normalised, as in CLIP's prompt ensembling."""
    cls = torch.nn.functional.normalize(class_text_emb.mean(dim=1), dim=-1)
    return (image_emb @ cls.T).argmax(dim=1)


def recall_at_k_any(sims: torch.Tensor, valid_mask: torch.Tensor, k: int) -> float:
    """Text-to-image Recall@k when several gallery images satisfy a query: a hit iff ANY image that
    satisfies it ranks in the top k. Why: a negated query ("a red cup and a blue fork that does not
    include a plate") is true of every gallery image with those objects and no plate, so counting only
    one designated target punishes a perfect reader. `sims` and `valid_mask` are (queries, gallery);
    ties count in the query's favour, as in `recall_at_k`. A query with no valid image is a miss."""
    if sims.shape != valid_mask.shape:
        raise ValueError(f"sims {tuple(sims.shape)} and valid_mask {tuple(valid_mask.shape)} must have one shape")
    if len(sims) == 0:
        return float("nan")
    valid = valid_mask.bool()
    best_valid = sims.masked_fill(~valid, float("-inf")).max(dim=1).values
    rank = (sims > best_valid[:, None]).sum(dim=1)
    hit = (rank < k) & valid.any(dim=1)
    return hit.float().mean().item()


def group_top1_accuracy(sims: torch.Tensor, target: Sequence[int]) -> float:
    """Share of queries whose target scores strictly above every other member of its own group.

    `sims` is (queries, group size): each query against its group (the target and counterfactuals
    that differ from it only where the query's negation matters). Strict, like VALSE's rule, so an
    encoder that cannot tell the images apart (equal scores) never counts as correct."""
    if len(sims) == 0:
        return float("nan")
    target_t = torch.as_tensor(list(target))
    rows = torch.arange(len(target_t))
    target_sim = sims[rows, target_t]
    others = sims.clone()
    others[rows, target_t] = float("-inf")
    return (target_sim > others.max(dim=1).values).float().mean().item()


def zeroshot_accuracy(image_emb: torch.Tensor, class_text_emb: torch.Tensor, labels: Sequence[int]) -> float:
    """Top-1 zero-shot classification with template ensembling (`zeroshot_predictions`)."""
    pred = zeroshot_predictions(image_emb, class_text_emb)
    return (pred == torch.as_tensor(list(labels))).float().mean().item()
