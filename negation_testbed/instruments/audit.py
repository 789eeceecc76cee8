"""Measuring the world's text-to-image instruments: how often the generator draws what it is asked,
and whether the judge and the rule-based reader (`reader`) agree on generated images.

Why here: the Neg Score of `negenc testbed t2i-compare` is only as good as its generator (does it
draw the subject?) and its judge (does it see what was drawn, and only that?). The rule-based
reader is an independent second opinion with no learned weights, so a judge that reads an empty
tinted background as "a red fork" shows up as disagreement. Choices about the generator (guidance,
sampler steps, training length) are made on `validation_prompts`: affirmative captions of fresh
training-world scenes drawn with their own seed, never the evaluation prompts of
`prompts.world_prompt_sets` (any caption equal to one of those is left out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..world import language as L
from ..world.prompts import world_prompt_sets
from ..world.scenes import sample_scene
from .judge import parse_question
from .reader import OBJECT, UNREADABLE, ReaderConfig, read_image, reader_says_yes

VALIDATION_SEED = 20_260_022  # fresh scenes: neither the training runs (seed 0) nor any benchmark use it


def validation_prompts(n: int = 64, seed: int = VALIDATION_SEED) -> list[dict]:
    """Affirmative training-world captions of one-object scenes (the generator's own alt-text wording),
    each with its subject question; evaluation prompts (`world_prompt_sets`) are skipped."""
    negated, control = world_prompt_sets(3)
    evaluation = {p["prompt"] for p in negated + control}
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    while len(out) < n:
        scene = sample_scene(rng, f"val-{len(out)}", n_objects=(1,))
        prompt = L.affirmative_caption(scene, rng, verbs=True)
        if prompt in evaluation:
            continue
        obj = scene.objects[0]
        out.append({"id": f"val_{len(out):03d}", "prompt": prompt, "subject": obj.kind, "colour": obj.colour,
                    "questions": [f"Is there a {obj.kind}?"]})
    return out


def sample_images(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance_scale: float,
                  batch_size: int = 32, negative_prompts: Sequence[str] | None = None) -> list:
    """PIL images, image i from its own CPU generator seeded with seeds[i] (as `eval_t2i` generates)."""
    import torch

    negs = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
    images: list = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[i: i + batch_size]]
        out = pipe(prompt=list(prompts[i: i + batch_size]), negative_prompt=negs[i: i + batch_size], generator=gens,
                   num_inference_steps=steps, guidance_scale=guidance_scale, output_type="pil")
        images += list(out.images)
    return images


@dataclass
class Tally:
    """Answers of the judge (P(yes) > 0.5) and the reader to one type of question."""

    n: int = 0
    judge_yes: int = 0
    reader_yes: int = 0
    agree: int = 0

    def add(self, judge_yes: bool, reader_yes: bool) -> None:
        self.n += 1
        self.judge_yes += judge_yes
        self.reader_yes += reader_yes
        self.agree += judge_yes == reader_yes

    def summary(self) -> dict:
        rate = (lambda k: k / self.n) if self.n else (lambda k: float("nan"))
        return {"n": self.n, "judge_yes_rate": rate(self.judge_yes), "reader_yes_rate": rate(self.reader_yes),
                "agreement": rate(self.agree)}


@dataclass
class Audit:
    """Per question type ("subject": the first question of an image, "negated": the others), and the
    reader's cell statuses over all images."""

    questions: dict[str, Tally] = field(default_factory=lambda: {"subject": Tally(), "negated": Tally()})
    cells: dict[str, int] = field(default_factory=lambda: {OBJECT: 0, "empty": 0, UNREADABLE: 0})

    def summary(self) -> dict:
        total = sum(self.cells.values())
        return {**{k: t.summary() for k, t in self.questions.items() if t.n},
                "cells": {**self.cells, "total": total,
                          "unreadable_rate": self.cells[UNREADABLE] / total if total else float("nan")}}


def audit_images(images: Sequence, questions: Sequence[Sequence[str]], judge, reader: ReaderConfig | None = None,
                 audit: Audit | None = None) -> Audit:
    """Judge and reader on every image's questions ("Is there a [colour] <kind>?"): the first is the
    subject question, the rest negated-object questions, as in `eval_t2i` prompt files."""
    if len(images) != len(questions):
        raise ValueError(f"one question list per image expected: {len(images)} images, {len(questions)} lists")
    audit = audit or Audit()
    flat_images = [im for im, qs in zip(images, questions, strict=True) for _ in qs]
    flat_q = [q for qs in questions for q in qs]
    probs = judge.yes_probability(flat_images, flat_q) if flat_q else []
    k = 0
    for image, qs in zip(images, questions, strict=True):
        readings = read_image(image, reader)
        for r in readings:
            audit.cells[r.status] += 1
        for j, q in enumerate(qs):
            form, kind, colour = parse_question(q)
            if form != "presence":
                raise ValueError(f"{q!r} is not a presence question")
            audit.questions["subject" if j == 0 else "negated"].add(probs[k] > 0.5, reader_says_yes(readings, kind, colour))
            k += 1
    return audit


def audit_t2i_compare(out: str | Path, judge, reader: ReaderConfig | None = None) -> dict:
    """{set: {arm: audit summary}} over a `negenc testbed t2i-compare` output folder (every
    `<set>/runs/<part>/images.jsonl` record; arms as the run logged them)."""
    from PIL import Image

    out = Path(out)
    result: dict = {}
    for log in sorted(out.glob("*/runs/*/images.jsonl")):
        name, part = log.parents[2].name, log.parent.name
        several = len([p for p in log.parents[1].iterdir() if p.is_dir() and p.name != "base"]) > 1
        by_arm: dict[str, list[dict]] = {}
        for line in log.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                arm = r["arm"].replace("swapped", f"swapped-{part}", 1) if several and part != "base" else r["arm"]
                by_arm.setdefault(arm, []).append(r)
        for arm, recs in by_arm.items():
            images = [Image.open(log.parent / r["image"]).convert("RGB") for r in recs]
            a = audit_images(images, [r["questions"] for r in recs], judge, reader)
            result.setdefault(name, {})[arm] = a.summary()
    return result


def audit_table(result: dict) -> str:
    """A markdown table of `audit_t2i_compare`'s result."""
    lines = ["| set | arm | question | n | judge yes | reader yes | agreement | unreadable cells |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, arms in result.items():
        for arm, s in arms.items():
            for q in ("subject", "negated"):
                if q in s:
                    t = s[q]
                    lines.append(f"| {name} | {arm} | {q} | {t['n']} | {t['judge_yes_rate']:.3f} | "
                                 f"{t['reader_yes_rate']:.3f} | {t['agreement']:.3f} | "
                                 f"{s['cells']['unreadable_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def choose_sampling(folder: str | Path, guidance: Sequence[float] = (3.0, 5.0, 7.0, 9.0),
                    steps: Sequence[int] = (15, 20, 25), n_prompts: int = 64, seed: int = 1000) -> dict:
    """Validation subject rate (the reader's, so the choice does not lean on the judge it checks) of a
    world generator for every (sampler steps, guidance scale); the best setting, ties to fewer steps
    and then lower guidance. Steps stop at 25: `t2i-compare`'s 960 images must stay under 10 minutes
    on one CPU core."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    prompts = validation_prompts(n_prompts)
    seeds = [seed + i for i in range(len(prompts))]
    table = []
    for st in steps:
        for g in guidance:
            images = sample_images(pipe, [p["prompt"] for p in prompts], seeds, st, g, batch_size=64)
            hits = [reader_says_yes(read_image(im), p["subject"]) for im, p in zip(images, prompts, strict=True)]
            rate = float(np.mean(hits))
            table.append({"steps": st, "guidance_scale": g, "reader_subject_rate": rate})
    best = max(table, key=lambda r: (r["reader_subject_rate"], -r["steps"], -r["guidance_scale"]))
    return {"best": best, "table": table, "prompts": n_prompts, "seed": seed}


__all__ = ["Audit", "Tally", "audit_images", "audit_t2i_compare", "audit_table", "choose_sampling", "sample_images",
           "validation_prompts"]
