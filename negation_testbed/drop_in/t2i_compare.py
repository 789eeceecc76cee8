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
from dataclasses import dataclass
from pathlib import Path

from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import atomic_write_json, atomic_write_text

from ..instruments.base_clip import ASSETS
from ..instruments.latent_generator import SD_DIR, SDXL_DIR
from ..world.prompts import PROMPT_SETS, T2I_FORMS, world_prompt_sets
from .encoders import drift_table, encoder_drift, encoder_labels

# The committed world generators, one per way a pipeline reads the text tower (docs/pipelines.md): IF-style
# (pixel space, masked last_hidden_state), SD-style (latent, 77 unmasked states), SDXL-style (latent, two
# towers' penultimate states + the second's projected pooled output).
GENERATORS = {"if": ASSETS / "t2i", "sd": SD_DIR, "sdxl": SDXL_DIR}


@dataclass
class T2ICompareConfig(Validated):
    """`negenc testbed t2i-compare`: Neg Score of the world generator, base vs negative prompt vs swapped."""

    encoders: tuple[str, ...] = option(help="fine-tuned encoder folders (<out>/run/model of `negenc demo`), comma list",
                                       flag="--encoder")
    out: str = option("t2i_compare_out", "output folder")
    generators: tuple[str, ...] = option(tuple(GENERATORS), "committed world generators, comma list: if (pixel "
                                         "IFPipeline, masked states), sd (latent StableDiffusionPipeline, 77 unmasked "
                                         "states), sdxl (latent StableDiffusionXLPipeline, two towers + pooled)",
                                         flag="--generator")
    pipeline: str | None = option(None, "a pipeline folder to measure instead of --generator (results under "
                                  "generators.custom)")
    judge: str = option(str(ASSETS / "judge"), "judge folder (default: the committed world judge)")
    seeds: tuple[int, ...] = option((0, 1, 2, 3, 4), "comma list of seeds (every arm uses the same)")
    forms: int = option(2, f"negated prompts per object kind (1-{len(T2I_FORMS)}; 16 kinds)")
    prompts: str = option("evaluation", "which prompts: evaluation (the scored set), validation (other frames and "
                          "draws, to choose settings on; never published as evaluation), validation-constructions (unseen "
                          "constructions of the trained cues, to choose training text on), heldout (other such "
                          "constructions) or heldout-cues (cue words never trained); the held-out sets are reported, "
                          "never chosen on")
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
        self.generators = (self.generators,) if isinstance(self.generators, str) else tuple(self.generators)
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
        unknown = [g for g in self.generators if g not in GENERATORS]
        if unknown or not self.generators or len(set(self.generators)) != len(self.generators):
            p.append(f"generators must be distinct names among {', '.join(GENERATORS)}, got {list(self.generators)}")
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


def generator_folders(cfg: T2ICompareConfig) -> dict[str, str]:
    """{name: pipeline folder} this comparison measures: `--pipeline` alone (as `custom`) or the named
    committed generators; a missing folder is refused before anything is loaded."""
    folders = {"custom": cfg.pipeline} if cfg.pipeline else {g: str(GENERATORS[g]) for g in cfg.generators}
    for name, folder in folders.items():
        if not (Path(folder) / "model_index.json").is_file():
            flag = "--pipeline" if name == "custom" else f"--generator {name}"
            hint = "" if name == "custom" else f" (regenerate it: negenc testbed pretrain-t2i --kind {name})"
            raise InputError(f"{flag}: {folder} is not a diffusers pipeline folder (no model_index.json){hint}")
    return folders


def t2i_compare(cfg: T2ICompareConfig) -> dict:
    """Neg Score on the world's negated prompts and its affirmative control, every arm on the same seeds,
    on each generator; then the judge's answers checked against the rule-based reader
    (`audit.audit_t2i_compare`). `results.json`: `generators.{name}` holds one generator's result."""
    from diffusers.utils import logging as diffusers_logging

    from eval_t2i.runner import OWNED
    from negation_encoder.distributed import processes
    from negation_encoder.runio import RunFolder

    from ..instruments.judge import WorldJudge

    folders = generator_folders(cfg)
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
    negated, control = world_prompt_sets(cfg.forms, prompts=cfg.prompts)
    if cfg.limit:
        negated, control = negated[: cfg.limit], control[: cfg.limit]
    sampling = {name: _sampling(cfg, folder) for name, folder in folders.items()}
    pipes = {name: _load_checked(folder, encoders) for name, folder in folders.items()}  # before the folder is touched
    fingerprint = {"command": "testbed t2i-compare", "encoders": encoders, "generators": folders,
                   "seeds": list(cfg.seeds), "sampling": sampling, "prompt_set": cfg.prompts,
                   "prompts": [p["id"] for p in negated]}
    owned = (*OWNED, *GENERATORS, "custom", "audit.json")  # a generator's folder, and the one-generator layout's files
    processes().on_main(lambda: RunFolder(out, owned).prepare(cfg.resume, cfg.overwrite, fingerprint))
    results, reports = {}, []
    for name, folder in folders.items():
        results[name] = _compare_generator(cfg, pipes.pop(name), folder, sampling[name], encoders, judge, out / name,
                                           negated, control)
        reports.append(f"## Generator `{name}` ({folder})\n\n{results[name].pop('report')}")
    seconds = round(time.perf_counter() - start, 1)
    atomic_write_text(out / "report.md", "\n".join(reports) + f"\nEncoders: {json.dumps(encoders)}. Seeds "
                      f"{list(cfg.seeds)}, {seconds} s.\n")
    result = {"generators": results, "encoders": encoders, "seconds": seconds, "prompt_set": cfg.prompts,
              "provenance": provenance()}
    atomic_write_json(out / "results.json", result)
    return result


def _sampling(cfg: T2ICompareConfig, folder: str) -> dict:
    steps, guidance = pipeline_sampling(folder)
    return {"steps": steps if cfg.steps is None else cfg.steps,
            "guidance_scale": guidance if cfg.guidance_scale is None else cfg.guidance_scale}


def _load_checked(folder: str, encoders: dict):
    """The pipeline, with every encoder checked against it (widths, slots) before any image is made."""
    from eval_t2i.generation import load_pipeline, resolve_device_dtype
    from eval_t2i.multi import check_encoders

    pipe = load_pipeline(folder, *resolve_device_dtype("cpu", "fp32"))
    check_encoders(pipe, encoders)
    return pipe


def _compare_generator(cfg: T2ICompareConfig, pipe, folder: str, sampling: dict, encoders: dict, judge, out: Path,
                       negated: list[dict], control: list[dict]) -> dict:
    """One generator's comparison in `out` (its own `negated/`, `control/`, `audit.json`, `report.md`): the
    keys every generator's result has (`negated`, `control`, `paired`, `judge_agreement`, ...)."""
    from eval_t2i.generation import GenerationConfig
    from eval_t2i.multi import compare_encoders
    from eval_t2i.negscore import NegScoreConfig
    from eval_t2i.prompts import load_prompts
    from eval_t2i.report import image_grid, markdown_table, write_summary

    from ..instruments.audit import audit_t2i_compare, audit_table

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    generation = GenerationConfig(steps=sampling["steps"], guidance_scale=sampling["guidance_scale"])
    results = {}
    for name, entries, arms in (("negated", negated, cfg.arms), ("control", control, cfg.control_arms)):
        part = out / name
        part.mkdir(exist_ok=True)
        (part / "prompts.json").write_text(json.dumps({"name": f"world_{name}", "prompts": entries}, indent=1) + "\n")
        items = load_prompts(part / "prompts.json").items
        ns = NegScoreConfig(seeds=tuple(cfg.seeds), arms=arms, batch_size=cfg.batch_size, progress=cfg.progress)
        summary, records, arm_names = compare_encoders(pipe, items, encoders, judge, part, ns, generation,
                                                       resume=cfg.resume, overwrite=cfg.overwrite)
        groups = {e["id"]: e["construction"] for e in entries if "construction" in e}
        if groups:  # the held-out sets: each arm's Neg Score per construction, beside its by_cue
            for arm, per in by_construction(records, groups).items():
                summary["arms"][arm]["by_construction"] = per
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
    table += (f"\n{type(pipe).__name__}, {sampling['steps']} steps, guidance {sampling['guidance_scale']}, "
              f"{seconds} s.\n")
    atomic_write_text(out / "report.md", table)
    return {"pipeline": folder, "pipeline_class": type(pipe).__name__, "drift": drift,
            "negated": results["negated"]["arms"], "control": results["control"]["arms"],
            "paired": results["negated"]["paired"], "control_paired": results["control"]["paired"],
            "judge_agreement": judge_agreement(audit), "seconds": seconds, "audit": audit, "sampling": sampling,
            "report": table}


def by_construction(records: list[dict], groups: dict[str, str]) -> dict[str, dict]:
    """{arm: {construction: {mean, n_images}}}: the Neg Score of each arm per named construction of a held-out
    set (`grammar`), from the scored images, by eval_t2i's own image score and grouping."""
    from eval_t2i.scoring import group_means, image_score

    per_arm: dict[str, dict] = {}
    for r in records:
        p = r["probabilities"]
        per_arm.setdefault(r["arm"], {})[(r["key"], int(r["seed"]))] = float(image_score(p[0], p[1:]))
    return {arm: group_means(scores, groups) for arm, scores in per_arm.items()}


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
