"""`negenc testbed t2i-compare`: Neg Score of the world's frozen generator with the base encoder, the
negative prompt and each swapped-in encoder, on the world's negated prompts and their affirmative control.

Where the work happens (docs/design.md: the core package never runs a diffusers pipeline): the comparison
is `eval_t2i.multi.compare_encoders` (its runner, arms, judge protocol, scoring, reports), called from here
with the world's prompts (`prompts.world_prompt_sets`) and the world judge; this module touches diffusers
only to quiet its logging, as `negenc t2i` does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import atomic_write_json, atomic_write_text

from ..instruments.base_clip import ASSETS
from ..world.prompts import PROMPT_SETS, T2I_FORMS, world_prompt_sets
from .encoders import drift_table, encoder_drift, encoder_labels


@dataclass


class T2ICompareConfig(Validated):
    """`negenc testbed t2i-compare`: Neg Score of the world generator, base vs negative prompt vs swapped."""

    encoders: tuple[str, ...] = option(help="fine-tuned encoder folders (<out>/run/model of `negenc demo`), comma list",
                                       flag="--encoder")
    out: str = option("t2i_compare_out", "output folder")
    pipeline: str = option(str(ASSETS / "t2i"), "pipeline folder (default: the committed world generator)")
    judge: str = option(str(ASSETS / "judge"), "judge folder (default: the committed world judge)")
    seeds: tuple[int, ...] = option((0, 1, 2, 3, 4), "comma list of seeds (every arm uses the same)")
    forms: int = option(2, f"negated prompts per object kind (1-{len(T2I_FORMS)}; 16 kinds)")
    prompts: str = option("evaluation", "which prompts: evaluation (the scored set) or validation (other frames and "
                          "draws, to choose settings on; never published as evaluation)")
    limit: int | None = option(None, "only the first N prompts (smoke runs)")
    steps: int | None = option(None, "denoising steps (default: the pipeline's validated setting, pretrain_info.json)")
    guidance_scale: float | None = option(None, "classifier-free guidance scale (default: likewise)")
    batch_size: int = option(16, "images per pipeline call")
    resume: bool = option(False, "continue a run in --out")
    overwrite: bool = option(False, "replace the results in --out")
    progress: bool = option(True, cli=False)
    arms: tuple[str, ...] = option(("base", "base+negprompt", "omit", "swapped", "swapped+negprompt"), cli=False)
    control_arms: tuple[str, ...] = option(("base", "swapped"), cli=False)

    def __post_init__(self) -> None:
        self.encoders = tuple(self.encoders) if not isinstance(self.encoders, str) else (self.encoders,)
        self.seeds = tuple(self.seeds)
        super().__post_init__()

    def problems(self) -> list[str]:
        p = collect(at_least(self, "steps", 1, True), at_least(self, "batch_size", 1), at_least(self, "limit", 1, True),
                    at_least(self, "guidance_scale", 0, True))
        if not 1 <= self.forms <= len(T2I_FORMS):
            p.append(f"forms must be in 1..{len(T2I_FORMS)}, got {self.forms}")
        if self.prompts not in PROMPT_SETS:
            p.append(f"prompts must be one of {', '.join(PROMPT_SETS)}, got {self.prompts!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            p.append(f"seeds must be distinct integers, at least one, got {list(self.seeds)}")
        if not self.encoders:
            p.append("encoders: at least one encoder folder is needed")
        if self.resume and self.overwrite:
            p.append("resume and overwrite contradict each other; pass one")
        return p


def pipeline_sampling(folder: str | Path) -> tuple[int, float]:
    """(steps, guidance scale) the world generator was validated with: its `pretrain_info.json` "sampling"
    entry (chosen on `audit.validation_prompts`, never on the evaluation prompts); 50 and 4.0 for
    a folder without one (a generator saved without a sampling choice)."""
    try:
        sampling = json.loads((Path(folder) / "pretrain_info.json").read_text())["sampling"]
        return int(sampling["steps"]), float(sampling["guidance_scale"])
    except (OSError, KeyError, ValueError, TypeError):
        return 50, 4.0


def t2i_compare(cfg: T2ICompareConfig) -> dict:
    """Neg Score on the world's negated prompts and its affirmative control, every arm on the same seeds;
    then the judge's answers checked against the rule-based reader (`audit.audit_t2i_compare`)."""
    from diffusers.utils import logging as diffusers_logging

    from eval_t2i.generation import GenerationConfig, load_pipeline, resolve_device_dtype
    from eval_t2i.multi import check_encoders, compare_encoders
    from eval_t2i.negscore import NegScoreConfig
    from eval_t2i.prompts import load_prompts
    from eval_t2i.report import image_grid, markdown_table, write_summary
    from eval_t2i.runner import prepare_out_dir

    from ..instruments.audit import audit_t2i_compare, audit_table
    from ..instruments.judge import WorldJudge

    default_steps, default_guidance = pipeline_sampling(cfg.pipeline)
    cfg = replace(cfg, steps=default_steps if cfg.steps is None else cfg.steps,
                  guidance_scale=default_guidance if cfg.guidance_scale is None else cfg.guidance_scale)
    encoders = encoder_labels(list(cfg.encoders))
    try:
        judge = WorldJudge.from_pretrained(cfg.judge)
    except OSError as e:
        raise InputError(f"--judge {cfg.judge}: {e}") from None
    out = Path(cfg.out)
    start = time.perf_counter()
    diffusers_logging.set_verbosity_error()  # IFPipeline warns on every call that bs4 is absent
    if not cfg.progress:
        diffusers_logging.disable_progress_bar()  # "Loading pipeline components" too
    device, dtype = resolve_device_dtype("cpu", "fp32")
    pipe = load_pipeline(cfg.pipeline, device, dtype)
    check_encoders(pipe, encoders)  # before the folder is touched or any image is made
    negated, control = world_prompt_sets(cfg.forms, prompts=cfg.prompts)
    if cfg.limit:
        negated, control = negated[: cfg.limit], control[: cfg.limit]
    fingerprint = {"command": "testbed t2i-compare", "encoders": encoders, "pipeline": cfg.pipeline,
                   "seeds": list(cfg.seeds), "steps": cfg.steps, "guidance_scale": cfg.guidance_scale,
                   "prompt_set": cfg.prompts, "prompts": [p["id"] for p in negated]}
    prepare_out_dir(out, fingerprint, cfg.resume, cfg.overwrite)
    generation = GenerationConfig(steps=cfg.steps, guidance_scale=cfg.guidance_scale)
    results = {}
    for name, entries, arms in (("negated", negated, cfg.arms), ("control", control, cfg.control_arms)):
        part = out / name
        part.mkdir(exist_ok=True)
        (part / "prompts.json").write_text(json.dumps({"name": f"world_{name}", "prompts": entries}, indent=1) + "\n")
        items = load_prompts(part / "prompts.json").items
        ns = NegScoreConfig(seeds=tuple(cfg.seeds), arms=arms, batch_size=cfg.batch_size, progress=cfg.progress)
        summary, records, arm_names = compare_encoders(pipe, items, encoders, judge, part, ns, generation,
                                                       resume=cfg.resume, overwrite=cfg.overwrite)
        write_summary(part, summary)
        (part / "report.md").write_text(markdown_table(summary, f"Neg Score on the world ({name} prompts)"))
        image_grid(part, records, arm_names, cfg.seeds, max_rows=16, cell=96)
        results[name] = summary
    table = t2i_table(results["negated"], results["control"])
    drift = {label: {"negated": encoder_drift(path, [p["prompt"] for p in negated]),
                     "control": encoder_drift(path, [p["prompt"] for p in control])} for label, path in encoders.items()}
    table += "\n" + drift_table(drift)
    audit = audit_t2i_compare(out, judge)
    atomic_write_json(out / "audit.json", audit)
    table += "\nJudge (P(yes) > 0.5) against the rule-based reader on the generated images:\n\n" + audit_table(audit)
    seconds = round(time.perf_counter() - start, 1)
    atomic_write_text(out / "report.md", table + f"\nEncoders: {json.dumps(encoders)}. Seeds {list(cfg.seeds)}, "
                      f"{cfg.steps} steps, guidance {cfg.guidance_scale}, {seconds} s.\n")
    result = {"drift": drift, "negated": results["negated"]["arms"], "control": results["control"]["arms"],
              "paired": results["negated"]["paired"], "control_paired": results["control"]["paired"],
              "judge_agreement": judge_agreement(audit), "encoders": encoders, "seconds": seconds, "audit": audit,
              "sampling": {"steps": cfg.steps, "guidance_scale": cfg.guidance_scale}, "prompt_set": cfg.prompts,
              "provenance": provenance()}
    atomic_write_json(out / "results.json", result)
    return result


def judge_agreement(audit: dict) -> dict[str, float | None]:
    """{subject, negated}: the share of this run's (image, question) pairs where the judge (P(yes) > 0.5)
    and the rule-based reader give the same answer, pooled over sets and arms."""
    out: dict[str, float | None] = {}
    for q in ("subject", "negated"):
        tallies = [arm[q] for arms in audit.values() for arm in arms.values() if q in arm]
        n = sum(t["n"] for t in tallies)
        out[q] = sum(t["agreement"] * t["n"] for t in tallies) / n if n else None
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def t2i_table(negated: dict, control: dict) -> str:
    """Per arm: Neg Score, its paired difference to the base, the subject and negated-object rates, and
    the affirmative control (same encoder, no negation) beside it."""
    lines = ["| arm | Neg Score (%) [95% CI] | vs base (pts) [95% CI] | subject (%) | negated object (%) | "
             "affirmative control (%) [95% CI] | control subject (%) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for arm, a in negated["arms"].items():
        d = negated["paired"].get(f"{arm} - base")
        c = control["arms"].get(arm)  # the control runs the plain arms only
        lines.append(f"| {arm} | {_pct(a['neg_score'])} [{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}] | "
                     + (f"{_pct(d['mean'])} [{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}]" if d else "-") + " | "
                     + f"{_pct(a.get('subject_rate'))} | {_pct(a.get('negated_rate'))} | "
                     + (f"{_pct(c['neg_score'])} [{_pct(c['ci95'][0])}, {_pct(c['ci95'][1])}] | "
                        f"{_pct(c.get('subject_rate'))}" if c else "- | -") + " |")
    extra = [(k, v) for k, v in negated["paired"].items() if k.endswith("- base+negprompt")]
    if extra:
        lines += ["", "| paired over (prompt, seed) | mean (pts) | 95% CI |", "|---|---:|---:|"]
        lines += [f"| {k} | {_pct(v['mean'])} | [{_pct(v['ci95'][0])}, {_pct(v['ci95'][1])}] |" for k, v in extra]
    return "\n".join(lines) + "\n"
