"""The Neg Score rule and its bootstrap: pure functions, the one place where a result is defined.

DESIGN.md, "Neg Score (T2I)": a judge answers yes iff P("yes") > P("no") at its first answer token,
i.e. iff its normalised yes-probability p = P(yes) / (P(yes) + P(no)) is > 0.5 (a tie is a no); an
image scores 1 only if the subject question is answered yes AND every negated-concept question no.
Everything that reports a Neg Score (runner, reports, CLI, benchmark) imports these functions.

Bootstrap unit: prompts. The seeds of one prompt share its wording, so they are not independent
draws; resampling whole prompts (a cluster bootstrap) keeps that correlation inside each resample,
and the paired difference of two arms resamples the same prompts in both arms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

YES_THRESHOLD = 0.5
BOOTSTRAP_UNIT = "prompt"


def is_yes(p_yes: float) -> bool:
    """The judge's answer: yes iff P(yes) > P(no), i.e. the normalised yes-probability exceeds 0.5."""
    return p_yes > YES_THRESHOLD


def image_score(subject_p: float, negated_ps: Sequence[float]) -> int:
    """1 iff the subject is judged present and every negated concept absent, else 0."""
    return int(is_yes(subject_p) and not any(is_yes(p) for p in negated_ps))


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int  # number of bootstrap units (prompts)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n_prompts": self.n}


def _units(values_by_unit: Mapping[str, Sequence[float]]) -> list[np.ndarray]:
    # sorted by unit name: the interval must not depend on the order records were written (a resumed run)
    units = [np.asarray(values_by_unit[k], dtype=float) for k in sorted(values_by_unit) if len(values_by_unit[k])]
    if not units:
        raise ValueError("bootstrap needs at least one prompt with at least one value")
    return units


def bootstrap_mean(values_by_unit: Mapping[str, Sequence[float]], n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> Interval:
    """Mean over all values, and a percentile interval from resampling units (prompts) with replacement.

    Each resample draws as many units as there are, concatenates their values and takes the mean, so a
    prompt with more seeds weighs more, as it does in the point estimate. Seeded: the same inputs give
    the same interval.
    """
    units = _units(values_by_unit)
    sums = np.array([u.sum() for u in units])
    counts = np.array([len(u) for u in units], dtype=float)
    point = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(units), size=(n_boot, len(units)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), len(units))


def paired_difference(scores_a: Mapping[tuple[str, int], float], scores_b: Mapping[tuple[str, int], float],
                      n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Arm b minus arm a over the (prompt, seed) pairs both arms scored, with a prompt-level bootstrap.

    Pairing removes the prompt's and the seed's own difficulty from the comparison: both arms start
    from the same latents for the same wording.
    """
    common = sorted(set(scores_a) & set(scores_b))
    if not common:
        raise ValueError("the two arms share no (prompt, seed) pair to compare")
    by_prompt: dict[str, list[float]] = {}
    for key in common:
        by_prompt.setdefault(key[0], []).append(float(scores_b[key]) - float(scores_a[key]))
    return bootstrap_mean(by_prompt, n_boot=n_boot, seed=seed, level=level)


def group_means(scores: Mapping[tuple[str, int], float], groups: Mapping[str, str]) -> dict[str, dict]:
    """Mean and count of image scores per group (a prompt id -> group label map: negation type, cue)."""
    acc: dict[str, list[float]] = {}
    for (prompt_id, _seed), s in scores.items():
        acc.setdefault(groups[prompt_id], []).append(float(s))
    return {g: {"mean": float(np.mean(v)), "n_images": len(v)} for g, v in sorted(acc.items())}


def tifa_aggregate(results: Sequence[Mapping]) -> dict:
    """TIFA's numbers from per-question results `{id, element_type, correct}` (one per question and image).

    DESIGN.md, "TIFA": a question scores 1 if the judge's choice equals `answer`; the mean per caption
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
