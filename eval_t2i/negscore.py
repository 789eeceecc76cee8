"""Neg Score: prompts x seeds x arms -> images -> judge answers -> summary (rule in `scoring`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .generation import ARMS, ArmSwitcher, GenerationConfig, arm_prompt, arm_t5_prompt
from .prompts import PromptItem
from .runner import Job, run_jobs
from .scoring import BOOTSTRAP_UNIT, bootstrap_mean, group_means, image_score, is_yes, paired_difference


@dataclass(frozen=True)
class NegScoreConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    arms: tuple[str, ...] = ("base", "base+negprompt")
    batch_size: int = 4
    resamples: int = 2000
    boot_seed: int = 0
    progress: bool = True


def build_jobs(items: Sequence[PromptItem], config: NegScoreConfig, splitter=None) -> list[Job]:
    jobs = []
    for arm in config.arms:
        for item in items:
            prompt, negative = arm_prompt(item, ARMS[arm], splitter)
            meta = {"prompt_id": item.id, "prompt": item.prompt, "negation_type": item.negation_type,
                    "cue": item.cue, "questions": list(item.questions)}
            t5 = arm_t5_prompt(item, ARMS[arm], splitter)
            jobs.extend(Job(arm, item.id, seed, prompt, negative, meta, t5) for seed in config.seeds)
    return jobs


def judge_images(judge) -> Callable:
    """The judge fields of a Neg Score record: every question's P(yes), its answer and the image score;
    all questions of a batch go to the judge in one call."""

    def fn(images, jobs: list[Job]) -> list[dict]:
        flat_images, flat_questions = [], []
        for image, job in zip(images, jobs, strict=True):
            flat_images += [image] * len(job.meta["questions"])
            flat_questions += job.meta["questions"]
        probs = judge.yes_probability(flat_images, flat_questions)
        out, k = [], 0
        for job in jobs:
            n = len(job.meta["questions"])
            p = probs[k: k + n]
            k += n
            out.append({"probabilities": p, "answers": ["yes" if is_yes(x) else "no" for x in p],
                        "score": image_score(p[0], p[1:]), "judge": getattr(judge, "name", type(judge).__name__)})
        return out

    return fn


def run_negscore(items: Sequence[PromptItem], switcher: ArmSwitcher, judge, out: str | Path,
                 config: NegScoreConfig, generation: GenerationConfig, splitter=None,
                 on_record: Callable[[dict], None] | None = None) -> tuple[dict, list[dict]]:
    """Generate and judge what is missing from `out/images.jsonl`, then summarise every record there."""
    out = Path(out)
    records, stats = run_jobs(build_jobs(items, config, splitter), switcher, out, "images.jsonl",
                              judge_images(judge), generation, config.batch_size, config.progress, on_record)
    wanted = {item.id for item in items}
    records = [r for r in records if r["key"] in wanted and r["arm"] in config.arms and r["seed"] in config.seeds]
    summary = summarize(records, config.arms, config.resamples, config.boot_seed)
    summary["run"] = {"generated": stats.generated, "skipped_finished": stats.skipped}
    return summary, records


def _rate(flags: list[bool]) -> float | None:
    """The share of True; None where no image had such a question (an affirmative control has no
    negated concept, so its negated rate is undefined, not 0)."""
    return sum(flags) / len(flags) if flags else None


def summarize(records: Sequence[dict], arms: Sequence[str], resamples: int = 2000, boot_seed: int = 0) -> dict:
    """Per arm: the mean, its prompt-bootstrap interval, the subject rate (first question judged yes) and
    the negated rate (any further question judged yes: the negated object is in the image), means per
    negation type and per cue; and the
    paired difference of each other arm against the first. Scores are recomputed from the stored
    probabilities with `scoring.image_score`, so the rule is applied in one place."""
    scores: dict[str, dict[tuple[str, int], float]] = {a: {} for a in arms}
    subject: dict[str, list[bool]] = {a: [] for a in arms}
    negated: dict[str, list[bool]] = {a: [] for a in arms}
    types, cues = {}, {}
    for r in records:
        if r["arm"] in scores:
            p = r["probabilities"]
            scores[r["arm"]][(r["key"], int(r["seed"]))] = float(image_score(p[0], p[1:]))
            types[r["key"]], cues[r["key"]] = r["negation_type"], r["cue"]
            subject[r["arm"]].append(is_yes(p[0]))
            if len(p) > 1:
                negated[r["arm"]].append(any(is_yes(x) for x in p[1:]))
    summary: dict = {"bootstrap_unit": BOOTSTRAP_UNIT, "bootstrap_resamples": resamples, "bootstrap_seed": boot_seed,
                     "yes_rule": "P(yes) > P(no) at the first answer token", "arms": {}, "paired": {},
                     "per_prompt": {}}
    for arm in arms:
        s = scores[arm]
        if not s:
            continue
        by_prompt: dict[str, list[float]] = {}
        for (pid, _seed), v in sorted(s.items()):
            by_prompt.setdefault(pid, []).append(v)
        ci = bootstrap_mean(by_prompt, resamples=resamples, seed=boot_seed)
        summary["arms"][arm] = {"neg_score": ci.mean, "ci95": [ci.low, ci.high], "n_images": len(s),
                                "n_prompts": ci.n, "subject_rate": _rate(subject[arm]),
                                "negated_rate": _rate(negated[arm]), "by_negation_type": group_means(s, types),
                                "by_cue": group_means(s, cues)}
        summary["per_prompt"][arm] = {pid: sum(v) / len(v) for pid, v in by_prompt.items()}
    present = [a for a in arms if scores[a]]
    for arm in present[1:]:
        d = paired_difference(scores[present[0]], scores[arm], resamples=resamples, seed=boot_seed)
        pairs = len(set(scores[present[0]]) & set(scores[arm]))
        summary["paired"][f"{arm} - {present[0]}"] = {"mean": d.mean, "ci95": [d.low, d.high], "n_pairs": pairs}
    return summary
