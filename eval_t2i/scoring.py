"""The Neg Score rule and its bootstrap: pure functions, the one place where a result is defined.

docs/design.md, "Neg Score (T2I)": a judge answers yes iff P("yes") > P("no") at its first answer token
(`negation_encoder.yesno.is_yes`); an image scores 1 only if the subject question is answered yes AND every
negated-concept question no. Everything that reports a Neg Score (runner, reports, CLI, benchmark)
imports these functions.

Bootstrap unit: prompts (`negation_encoder.stats`: the seeds of one prompt share its wording, so they
are not independent draws), and the paired difference of two arms resamples the same prompts in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from negation_encoder.stats import bootstrap_mean, paired_difference
from negation_encoder.yesno import is_yes

BOOTSTRAP_UNIT = "prompt"
__all__ = ["BOOTSTRAP_UNIT", "bootstrap_mean", "group_means", "image_score", "is_yes", "paired_difference",
           "tifa_aggregate"]


def image_score(subject_p: float, negated_ps: Sequence[float]) -> int:
    """1 iff the subject is judged present and every negated concept absent, else 0."""
    return int(is_yes(subject_p) and not any(is_yes(p) for p in negated_ps))


def group_means(scores: Mapping[tuple[str, int], float], groups: Mapping[str, str]) -> dict[str, dict]:
    """Mean and count of image scores per group (a prompt id -> group label map: negation type, cue)."""
    acc: dict[str, list[float]] = {}
    for (prompt_id, _seed), s in scores.items():
        acc.setdefault(groups[prompt_id], []).append(float(s))
    return {g: {"mean": float(np.mean(v)), "n_images": len(v)} for g, v in sorted(acc.items())}


def tifa_aggregate(results: Sequence[Mapping]) -> dict:
    """TIFA's numbers from per-question results `{id, element_type, correct}` (one per question and image).

    docs/design.md, "TIFA": a question scores 1 if the judge's choice equals `answer`; the mean per caption
    (`id`, over its questions and images), then the mean over captions is `tifa_average`; accuracy by
    `element_type` is over all scored questions of that type.
    """
    if not results:
        raise ValueError("no TIFA question was scored")
    per_caption: dict[str, list[float]] = {}
    per_type: dict[str, list[float]] = {}
    for r in results:
        per_caption.setdefault(str(r["id"]), []).append(float(r["correct"]))
        per_type.setdefault(str(r["element_type"]), []).append(float(r["correct"]))
    caption_means = {k: float(np.mean(v)) for k, v in sorted(per_caption.items())}
    values = list(caption_means.values())
    return {"tifa_average": float(np.mean(values)), "tifa_stdev": float(np.std(values)),
            "accuracy_by_type": {k: float(np.mean(v)) for k, v in sorted(per_type.items())},
            "per_caption": caption_means, "n_captions": len(values), "n_questions": len(results)}
