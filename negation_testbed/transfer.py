"""The drop-in shown on the world (issue #14): prompt and referring sets from the world's language, and
the two comparisons, `negenc testbed t2i-compare` and `negenc testbed seg-compare`.

Why these sets: the generator, the segmenter and the judge were trained with the *base* encoder and
affirmative text only, so any gain of a swapped encoder on negated prompts is transfer, not training.
Each negated set has an affirmative control on the same subjects and objects (what the swap must
not break). Subjects and negated objects share a theme ("a kitchen with a red cup and no fork"), so
the negated object is one the generator is likely to draw, as in COCO-based prompt sets.

Where the work happens (docs/design.md: the core package never runs a diffusers pipeline): the t2i
comparison is `eval_t2i.multi.compare_encoders` (its runner, arms, judge protocol, scoring, reports),
called from here with the world's prompts and the world judge; this module touches diffusers only to
quiet its logging, as `negenc t2i` does. The segmentation comparison is `eval_seg.runner.run_arm` on JSONL sets written here; CLIPSeg
is a transformers model, which the core may run.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from integrations.clipseg import SplitRoute
from negation_encoder.checkpoint.layout import check_encoder_folder
from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import RunFolder, atomic_write_json, atomic_write_text

from .instruments.base_clip import ASSETS, BASE_DIR
from .world import language as L
from .world.scenes import COLOURS, OBJECT_THEME, OBJECTS, THEME_PLACE, THEMES

T2I_FORMS = (  # (negated prompt, cue, affirmative control): the cue words the world's splitter reads
    ("a {place} with a {colour} {kind} and no {neg}", "no", "a {place} with a {colour} {kind}"),
    ("a {colour} {kind} in a {place} without a {neg}", "without", "a {colour} {kind} in a {place}"),
    ("a {place} with a {colour} {kind} but not a {neg}", "not", "a {place} with a {colour} {kind}"),
)
# Validation prompts (`t2i-compare --prompts validation`): the same cues in frames that neither train
# (`language.TRAIN_T2I_FORMS`) nor are scored (`T2I_FORMS`), drawn with their own seed, so a setting of the
# generator side (sampling, a route's options) can be chosen on prompts the evaluation never scores and the
# fine-tuning never read (tests/test_transfer.py checks both).
VALIDATION_T2I_FORMS = (
    ("{place} scene showing a {colour} {kind} and no {neg}", "no", "{place} scene showing a {colour} {kind}"),
    ("this image shows a {colour} {kind} at the {place}, without a {neg}", "without",
     "this image shows a {colour} {kind} at the {place}"),
    ("one {colour} {kind} at the {place} and not a {neg}", "not", "one {colour} {kind} at the {place}"),
)
VALIDATION_PROMPT_SEED = 8_675_309
PROMPT_SETS = ("evaluation", "validation")


def world_prompt_sets(forms_per_kind: int = 3, seed: int = 0, prompts: str = "evaluation"
                     ) -> tuple[list[dict], list[dict]]:
    """(negated, control) entries in eval_t2i's `negation_v1` format: one negated prompt per kind and
    form (the negated object from the subject's theme), and its affirmative twin (no negated concept).
    `prompts="validation"`: `VALIDATION_T2I_FORMS` drawn with `VALIDATION_PROMPT_SEED` (`seed` ignored),
    ids prefixed "val_"."""
    if prompts not in PROMPT_SETS:
        raise ValueError(f"prompts must be one of {', '.join(PROMPT_SETS)}, got {prompts!r}")
    validation = prompts == "validation"
    forms = VALIDATION_T2I_FORMS if validation else T2I_FORMS
    rng = np.random.default_rng(VALIDATION_PROMPT_SEED if validation else seed)
    negated, control = [], []
    for kind in OBJECTS:
        theme = OBJECT_THEME[kind]
        for f, (form, cue, affirm) in enumerate(forms[:forms_per_kind]):
            neg = str(rng.choice([k for k in THEMES[theme] if k != kind]))
            colour = str(rng.choice(list(COLOURS)))
            slots = {"place": THEME_PLACE[theme], "colour": colour, "kind": kind, "neg": neg}
            pid = f"val_{kind}_{f}" if validation else f"{kind}_{f}"
            negated.append({"id": pid, "prompt": form.format(**slots), "subject": kind, "negated_concepts": [neg],
                            "negation_type": "object", "cue": cue,
                            "questions": [f"Is there a {kind}?", f"Is there a {neg}?"]})
            control.append({"id": f"{pid}_control", "prompt": affirm.format(**slots), "subject": kind,
                            "negated_concepts": [], "negation_type": "none", "cue": "none",
                            "questions": [f"Is there a {kind}?"]})
    return negated, control


CONTROL_REFERRING_FORMS = ("the {colour} {kind}",)  # seg-compare's affirmative control (evaluation wording)


def referring_pairs(n: int, seed: int, forms: tuple[str, ...] = L.REFERRING_FORMS, prefix: str = "ref"):
    """(scene, target index, other index, negated form) for scenes with two objects of one kind in different
    colours: the draw behind every referring set, so a diagnosis that needs the objects (not the text) sees
    the very scenes `referring_samples` makes for the same seed and forms."""
    from .instruments.segmenter import pair_scene

    rng = np.random.default_rng(seed)
    for i in range(n):
        scene, a, b = pair_scene(rng, f"{prefix}-{i}", kind=OBJECTS[i % len(OBJECTS)])
        target, other = (a, b) if rng.random() < 0.5 else (b, a)
        yield scene, target, other, forms[int(rng.integers(len(forms)))]


def affirmative_phrase(obj, i: int, forms: tuple[str, ...]) -> str:
    """Sample `i`'s affirmative expression of `obj` ("the blue cup"): the forms taken in turn."""
    return forms[i % len(forms)].format(colour=obj.colour, kind=obj.kind, cell=obj.cell)


def referring_samples(n: int, seed: int, negated: bool, forms: tuple[str, ...] = L.REFERRING_FORMS,
                      prefix: str = "ref", affirm_forms: tuple[str, ...] = CONTROL_REFERRING_FORMS):
    """(image, text, target mask, other mask) for scenes with two objects of one kind in different colours;
    the phrase picks one. Negated: a referring form ("the cup that is not red") naming the *other*
    object's colour; control: "the blue cup". The same seed gives the same scenes and targets for both."""
    from .instruments.segmenter import object_masks

    for i, (scene, target, other, form) in enumerate(referring_pairs(n, seed, forms, prefix)):
        t, o = scene.objects[target], scene.objects[other]
        text = form.format(kind=t.kind, value=o.colour) if negated else affirmative_phrase(t, i, affirm_forms)
        image, masks = object_masks(scene)
        yield image, text, masks[target], masks[other]


def write_referring_set(out: Path, n: int, seed: int, negated: bool) -> Path:
    """A JSONL set for `eval_seg` (`{"id", "image", "text", "mask", "other_mask"}`) of `referring_samples`
    with the EVALUATION forms (`language.REFERRING_FORMS`); negated and control sets of one seed pair
    sample by sample."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, text, target, other) in enumerate(referring_samples(n, seed, negated)):
        Image.fromarray(image).save(out / f"{i:04d}.png")
        Image.fromarray(target.astype(np.uint8) * 255).save(out / f"{i:04d}_mask.png")
        Image.fromarray(other.astype(np.uint8) * 255).save(out / f"{i:04d}_other.png")
        lines.append(json.dumps({"id": f"{i:04d}", "image": f"{i:04d}.png", "text": text, "mask": f"{i:04d}_mask.png",
                                 "other_mask": f"{i:04d}_other.png"}))
    path = out / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


ROUTE_FIT_SEED = 1000  # training scenes for the split route; seg-compare draws its sets from seed 0


def fit_seg_route(model: str | Path, samples: int = 800, seed: int = ROUTE_FIT_SEED, batch_size: int = 64,
                  save: bool = True):
    """Fit the segmenter's split route (`integrations.SplitRoute`) on TRAINING scenes with the training
    referring forms (`language.TRAIN_REFERRING_FORMS`, disjoint from the evaluated ones) and save it
    beside the CLIPSeg weights, where `segment(..., route="split")` and seg-compare read it."""
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from integrations.clipseg import SplitRoute, clipseg_probabilities
    from negation_encoder.splitting import split_negation

    seg = CLIPSegForImageSegmentation.from_pretrained(model).eval()
    processor = CLIPSegProcessor.from_pretrained(model)
    template = SplitRoute().concept_template
    rows = list(referring_samples(samples, seed, True, L.TRAIN_REFERRING_FORMS, prefix="route"))
    aff, neg = [], []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i: i + batch_size]
        parts = [split_negation(r[1]) for r in chunk]
        if not all(s.has_negation for s in parts):
            bad = next(r[1] for r, s in zip(chunk, parts, strict=True) if not s.has_negation)
            raise ValueError(f"the splitter finds no negation in the training phrase {bad!r}")
        images = [r[0] for r in chunk]
        aff.append(clipseg_probabilities(seg, processor, images, [s.affirmative for s in parts]))
        neg.append(clipseg_probabilities(seg, processor, images, [template.format(s.negated[0]) for s in parts]))
    masks = torch.from_numpy(np.stack([r[2] for r in rows]))
    route = SplitRoute.fit_on(torch.cat(aff), torch.cat(neg), masks, concept_template=template, seed=seed,
                              forms="language.TRAIN_REFERRING_FORMS", command="negenc testbed fit-seg-route")
    if save:
        route.save(model)
    return route


def target_wins(seg, processor, jsonl: Path, batch_size: int = 64, split_route=None) -> list[float]:
    """Per sample, 1.0 if the mean probability on the referred object exceeds that on the other object of
    its kind (the one a negated expression excludes), else 0.0: which object the model picked, which
    IoU mixes with how well it outlines it. Chance is 0.5. With `split_route`, the model reads the text
    through the split route (`integrations.segment`)."""
    from integrations.clipseg import segment

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    root = jsonl.parent
    wins: list[float] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i: i + batch_size]
        images = [np.asarray(Image.open(root / r["image"]).convert("RGB")) for r in chunk]
        route = "plain" if split_route is None else "split"
        probs = segment(seg, processor, images, [r["text"] for r in chunk], route=route, split_route=split_route)
        for r, p in zip(chunk, probs.numpy(), strict=True):
            target = np.asarray(Image.open(root / r["mask"])) > 0
            other = np.asarray(Image.open(root / r["other_mask"])) > 0
            wins.append(float(p[target].mean() > p[other].mean()))
    return wins


def encoder_labels(encoders: list[str]) -> dict[str, str]:
    """label -> folder; each folder must hold the docs/design.md checkpoint layout (checked before any compute)."""
    return {f"e{i}": str(check_encoder_folder(path)) for i, path in enumerate(encoders, start=1)}


def encoder_drift(encoder: str, texts: list[str], base: str | Path = BASE_DIR) -> dict[str, float]:
    """How far an encoder moved from the base on these texts, in the two spaces downstream models read:
    the projected, normalised text embedding (CLIPSeg's FiLM conditioning) and the 77 padded token
    hidden states (a diffusion UNet's cross-attention). Mean cosine similarity; 1.0 = unchanged."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPModel

    from .instruments.base_clip import world_tokenizer

    tok = world_tokenizer()
    models = [CLIPModel.from_pretrained(base).eval(), CLIPModel.from_pretrained(encoder).eval()]
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        outs = [m.text_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask) for m in models]
        proj = [F.normalize(m.text_projection(o.pooler_output), dim=-1) for m, o in zip(models, outs, strict=True)]
        tokens = F.cosine_similarity(outs[0].last_hidden_state, outs[1].last_hidden_state, dim=-1)
    return {"projected_cos": float((proj[0] * proj[1]).sum(-1).mean()), "token_cos": float(tokens.mean())}


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
    a folder without one (the first world generator's settings)."""
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

    from .instruments.audit import audit_t2i_compare, audit_table
    from .instruments.judge import WorldJudge

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


SEG_COMPARE_FILES = ("negated", "control", "data", "results.json", "report.md", "run_config.json")


@dataclass
class SegCompareConfig(Validated):
    """`negenc testbed seg-compare`: the world CLIPSeg, original vs swapped, plain vs split route."""

    encoders: tuple[str, ...] = option(help="fine-tuned encoder folders (<out>/run/model of `negenc demo`), comma list",
                                       flag="--encoder")
    out: str = option("seg_compare_out", "output folder")
    model: str = option(str(ASSETS / "seg"), "CLIPSeg folder (default: the committed world segmenter)")
    samples: int = option(400, "referring expressions per set (negated, control)")
    seed: int = option(0, "seed of the referring sets and the bootstrap")
    batch_size: int = option(32, "samples per CLIPSeg call")
    split: bool = option(True, "skip the training-free split route arms (split, swapped+split); they need the model "
                         "folder's negation_split_route.json (`negenc testbed fit-seg-route`)")
    resume: bool = option(False, "continue a run in --out")
    overwrite: bool = option(False, "replace the results in --out")
    progress: bool = option(True, cli=False)

    def __post_init__(self) -> None:
        self.encoders = tuple(self.encoders) if not isinstance(self.encoders, str) else (self.encoders,)
        super().__post_init__()

    def problems(self) -> list[str]:
        p = collect(at_least(self, "samples", 1), at_least(self, "batch_size", 1))
        if not self.encoders:
            p.append("encoders: at least one encoder folder is needed")
        if self.resume and self.overwrite:
            p.append("resume and overwrite contradict each other; pass one")
        return p


def seg_compare(cfg: SegCompareConfig) -> dict:
    """mIoU / IoU_BIN of the world CLIPSeg, original and with each encoder swapped in, on negated referring
    expressions and their affirmative control (the same scenes and targets), with paired intervals."""
    from eval_seg.datasets import DatasetConfig, load_dataset
    from eval_seg.runner import SegEvalConfig, check_config, load_clipseg, run_arm, swapped_copy
    from negation_encoder.stats import paired_bootstrap

    encoders = encoder_labels(list(cfg.encoders))
    out = Path(cfg.out)
    RunFolder(out, SEG_COMPARE_FILES).prepare(cfg.resume, cfg.overwrite)
    start = time.perf_counter()
    seg, processor = load_clipseg(cfg.model)
    try:
        route = SplitRoute.load(cfg.model) if cfg.split else None
    except FileNotFoundError as e:
        raise InputError(f"--split: {e} (or pass --no-split)") from None
    models = {"original": (seg, None)}
    for label, path in encoders.items():
        arm = "swapped" if len(encoders) == 1 else f"swapped-{label}"
        models[arm] = (swapped_copy(seg, path, cfg.model), path)  # every encoder checked before any compute
    arm_specs = [(arm, model, path, None) for arm, (model, path) in models.items()]
    if route is not None:  # the training-free route, alone ("split") and stacked on each swapped encoder
        arm_specs += [("split" if arm == "original" else f"{arm}+split", model, path, route)
                      for arm, (model, path) in models.items()]
    results: dict = {"encoders": encoders, "sets": {},
                     "split_route": None if route is None else {"weight": route.weight, "fit": route.fit}}
    for name, negated in (("negated", True), ("control", False)):
        jsonl = write_referring_set(out / "data" / name, cfg.samples, cfg.seed, negated)
        base_cfg = SegEvalConfig(dataset=DatasetConfig(kind="jsonl", jsonl=str(jsonl)), model=cfg.model,
                                 out=str(out / name), batch_size=cfg.batch_size, device="cpu", dtype="fp32",
                                 resume=cfg.resume, seed=cfg.seed, progress=cfg.progress)
        device, dtype = check_config(base_cfg)
        data = load_dataset(base_cfg.dataset)
        runs, wins = {}, {}
        for arm, model, path, arm_route in arm_specs:
            arm_cfg = replace(base_cfg, encoder=path, route="plain" if arm_route is None else "split")
            runs[arm] = run_arm(copy.deepcopy(model), processor, data, arm_cfg, out / name / arm.replace("+", "_"),
                                arm, device, dtype, arm_route)
            wins[arm] = target_wins(model, processor, jsonl, cfg.batch_size, arm_route)
        ids = [s.id for s in data.samples]
        arms = {}
        for arm, r in runs.items():
            entry = {k: r.metrics[k] for k in ("miou_0.3", "iou_bin_0.3", "fgiou_0.3", "miou_best", "ap")}
            entry["target_wins"] = float(np.mean(wins[arm]))
            if arm != "original":
                w = paired_bootstrap(wins["original"], wins[arm], resamples=1000, seed=cfg.seed)
                entry["paired_target_wins_vs_original"] = {"mean": w.mean, "ci95": [w.low, w.high], "n": w.n}
                d = paired_bootstrap([runs["original"].sample_ious[i] for i in ids], [r.sample_ious[i] for i in ids],
                                     resamples=1000, seed=cfg.seed)
                entry["paired_iou_0.3_vs_original"] = {"mean": d.mean, "ci95": [d.low, d.high], "n": d.n}
            arms[arm] = entry
        results["sets"][name] = arms
    results["drift"] = {label: {name: encoder_drift(path, [s.text for s in load_dataset(
        DatasetConfig(kind="jsonl", jsonl=str(out / "data" / name / "set.jsonl"))).samples])
        for name in ("negated", "control")} for label, path in encoders.items()}
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["provenance"] = provenance()
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", seg_table(results) + "\n" + drift_table(results["drift"]) + f"\nEncoders: {json.dumps(encoders)}. {cfg.samples} samples "
                                   f"per set, seed {cfg.seed}, {results['seconds']} s.\n")
    return results


def drift_table(drift: dict) -> str:
    lines = ["| encoder | set | projected-embedding cos to base | token hidden-state cos to base |", "|---|---|---:|---:|"]
    for label, sets in drift.items():
        lines += [f"| {label} | {name} | {d['projected_cos']:.3f} | {d['token_cos']:.3f} |" for name, d in sets.items()]
    return "\n".join(lines) + "\n"


def seg_table(results: dict) -> str:
    lines = ["| set | arm | mIoU@0.3 | IoU_BIN@0.3 | fgIoU@0.3 | AP | paired IoU@0.3 vs original [95% CI] | "
             "target beats the other object | paired vs original [95% CI] |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def ci(d: dict | None) -> str:
        return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "-"

    for name, arms in results["sets"].items():
        for arm, e in arms.items():
            lines.append(f"| {name} | {arm} | {e['miou_0.3']:.3f} | {e['iou_bin_0.3']:.3f} | {e['fgiou_0.3']:.3f} | "
                         f"{e['ap']:.3f} | {ci(e.get('paired_iou_0.3_vs_original'))} | {e['target_wins']:.3f} | "
                         f"{ci(e.get('paired_target_wins_vs_original'))} |")
    return "\n".join(lines) + "\n"


def instruments_fingerprint(folders: tuple[str | Path, ...] | None = None) -> str:
    """Hash of the bytes of the frozen models `drop_in` measures with (by default the committed generator,
    segmenter and judge). Why: a comparison resumed after one of them was retrained would otherwise mix
    transfer numbers of two instruments in one table (`compare` saves this with its settings)."""
    from negation_encoder.training.trainer import data_fingerprint

    folders = folders or (ASSETS / "t2i", ASSETS / "seg", ASSETS / "judge")
    files = [f for d in folders for f in sorted(Path(d).rglob("*")) if f.is_file()]
    return data_fingerprint([str(f) for f in files])


def drop_in(encoder: str | Path, out: str | Path, seg_samples: int = 200, t2i_prompts: int = 16,
            seeds: tuple[int, ...] = (0, 1), progress: bool = False, t2i_steps: int | None = None) -> dict:
    """A small real measurement of the drop-in (the demo's last step): the encoder swapped into the world's
    frozen segmenter (`seg_compare`, `seg_samples` expressions per set) and generator (`t2i_compare`, one
    prompt per object kind, `t2i_prompts` at most, `seeds`), beside the training-free routes. Small, so its
    intervals are wide; `negenc testbed seg-compare` / `t2i-compare` run the full sets."""
    out = Path(out)
    seg = seg_compare(SegCompareConfig(encoders=(str(encoder),), out=str(out / "seg"), samples=seg_samples,
                                       overwrite=True, progress=progress))
    steps = {} if t2i_steps is None else {"steps": t2i_steps}
    t2i = t2i_compare(T2ICompareConfig(encoders=(str(encoder),), out=str(out / "t2i"), forms=1, limit=t2i_prompts,
                                       seeds=seeds, overwrite=True, progress=progress, **steps))
    keep = ("miou_0.3", "target_wins", "paired_iou_0.3_vs_original")
    return {"seg": {name: {arm: {k: e[k] for k in keep if k in e} for arm, e in arms.items()}
                    for name, arms in seg["sets"].items()},
            "t2i": {name: {arm: {k: a[k] for k in ("neg_score", "ci95", "subject_rate", "negated_rate") if k in a}
                           for arm, a in t2i[name].items()} for name in ("negated", "control")},
            "t2i_paired": t2i["paired"],
            "settings": {"seg_samples": seg_samples, "t2i_prompts": t2i_prompts, "seeds": list(seeds)}}


def drop_in_markdown(d: dict) -> str:
    """The demo report's section for `drop_in`'s numbers."""
    s = d["settings"]
    lines = ["## The drop-in: the fine-tuned encoder in the world's frozen segmenter and generator", "",
             f"A small measurement ({s['seg_samples']} referring expressions per set; {s['t2i_prompts']} prompts x "
             f"{len(s['seeds'])} seeds): read directions, not decimals; the full comparisons are "
             "`negenc testbed seg-compare` and `negenc testbed t2i-compare`.", "",
             "| segmentation set | arm | mIoU@0.3 | target beats the other object |", "|---|---|---:|---:|"]
    for name, arms in d["seg"].items():
        lines += [f"| {name} | {arm} | {e['miou_0.3']:.3f} | {e['target_wins']:.3f} |" for arm, e in arms.items()]
    lines += ["", "| generation arm | Neg Score (%) | subject present (%) | negated object present (%) |",
              "|---|---:|---:|---:|"]
    for arm, a in d["t2i"]["negated"].items():
        rates = [f"{100 * a[k]:.1f}" if k in a else "-" for k in ("subject_rate", "negated_rate")]
        lines.append(f"| {arm} | {100 * a['neg_score']:.1f} | {rates[0]} | {rates[1]} |")
    return "\n".join(lines) + "\n"


__all__ = ["SegCompareConfig", "T2ICompareConfig", "drop_in", "instruments_fingerprint", "seg_compare", "t2i_compare",
           "world_prompt_sets", "write_referring_set"]
