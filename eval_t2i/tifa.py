"""TIFA-style faithfulness: TIFA v1.0 question/answer JSON, answered by the judge's own likelihoods.

Difference from TIFA: TIFA asks its VQA model for a free-form answer and maps it to the nearest
choice with a sentence embedder; here the judge scores every choice by its own log-likelihood as the
answer and the argmax is its choice (no extra model; a choice can never be "none of them"). The
aggregation (`scoring.tifa_aggregate`) is TIFA's: per caption, then over captions, plus by element type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from negation_encoder.errors import InputError

from .generation import ArmSwitcher, GenerationConfig
from .runner import Job, run_jobs
from .scoring import tifa_aggregate


@dataclass(frozen=True)
class TifaQuestion:
    id: str
    caption: str
    question: str
    choices: tuple[str, ...]
    answer: str
    element_type: str
    element: str


def load_tifa_questions(path: str | Path) -> list[TifaQuestion]:
    """Every question of a TIFA v1.0 question/answer file, validated (one line naming the entry)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: TIFA question file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of TIFA questions")
    out = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}" + (f" (id {e.get('id')!r})" if isinstance(e, dict) and "id" in e else "")
        if not isinstance(e, dict):
            raise InputError(f"{where}: expected an object, got {type(e).__name__}")
        for key in ("id", "caption", "question", "answer", "element_type"):
            if not isinstance(e.get(key), str) or not e[key].strip():
                raise InputError(f"{where}: {key!r} must be a non-empty string, got {e.get(key)!r}")
        choices = e.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise InputError(f"{where}: 'choices' must be a list of at least two strings, got {choices!r}")
        if e["answer"] not in choices:
            raise InputError(f"{where}: 'answer' {e['answer']!r} is not one of the choices {choices}")
        out.append(TifaQuestion(e["id"], e["caption"], e["question"], tuple(choices), e["answer"],
                                e["element_type"], str(e.get("element", ""))))
    return out


def captions(questions: Sequence[TifaQuestion]) -> dict[str, str]:
    """Caption text per id, in file order."""
    return {q.id: q.caption for q in questions}


def answer_questions(judge, images: list[Image.Image], per_image: list[list[TifaQuestion]]) -> list[list[dict]]:
    """Each image's questions answered by choice likelihood, in one judge call."""
    flat_img = [img for img, qs in zip(images, per_image, strict=True) for _ in qs]
    flat_q = [q for qs in per_image for q in qs]
    ll = judge.choice_likelihood(flat_img, [q.question for q in flat_q], [list(q.choices) for q in flat_q])
    results, k = [], 0
    for qs in per_image:
        rows = []
        for q in qs:
            scores = ll[k]
            k += 1
            choice = q.choices[max(range(len(scores)), key=scores.__getitem__)]
            rows.append({"id": q.id, "question": q.question, "element_type": q.element_type, "answer": q.answer,
                         "choice": choice, "log_likelihoods": scores, "correct": int(choice == q.answer)})
        results.append(rows)
    return results


def score_images(judge, questions: Sequence[TifaQuestion], images: dict[str, Image.Image]) -> dict:
    """TIFA on existing images (one per caption id, e.g. TIFA's `{id: file}` image map)."""
    by_id: dict[str, list[TifaQuestion]] = {}
    for q in questions:
        by_id.setdefault(q.id, []).append(q)
    missing = [k for k in by_id if k not in images]
    if missing:
        raise InputError(f"no image for caption id {missing[0]!r} ({len(missing)} missing)")
    ids = list(by_id)
    rows = answer_questions(judge, [images[k] for k in ids], [by_id[k] for k in ids])
    return tifa_aggregate([r for per in rows for r in per])


def run_tifa(questions: Sequence[TifaQuestion], switcher: ArmSwitcher, judge, out: str | Path, arms: Sequence[str],
             seeds: Sequence[int], generation: GenerationConfig, batch_size: int, progress: bool = True,
             on_record: Callable[[dict], None] | None = None) -> dict:
    """Generate each caption with each arm and seed (resumable log `tifa_images.jsonl`), answer its
    questions, and aggregate per arm."""
    by_id: dict[str, list[TifaQuestion]] = {}
    for q in questions:
        by_id.setdefault(q.id, []).append(q)
    jobs = [Job(arm, cid, seed, qs[0].caption, None, {"caption": qs[0].caption})
            for arm in arms for cid, qs in by_id.items() for seed in seeds]

    def judge_fn(images, batch: list[Job]) -> list[dict]:
        rows = answer_questions(judge, images, [by_id[j.key] for j in batch])
        return [{"questions": r} for r in rows]

    records, stats = run_jobs(jobs, switcher, Path(out), "tifa_images.jsonl", judge_fn, generation, batch_size,
                              progress, on_record)
    summary = {"method": "choice likelihood (TIFA maps a free-form answer with a sentence embedder; we do not)",
               "arms": {}, "run": {"generated": stats.generated, "skipped_finished": stats.skipped}}
    for arm in arms:
        rows = [q for r in records if r["arm"] == arm and r["key"] in by_id and r["seed"] in seeds
                for q in r["questions"]]
        if rows:
            summary["arms"][arm] = tifa_aggregate(rows)
    return summary
