"""The drop-in shown on the world (issue #14): prompt and referring sets from the world's language, and
the two comparisons, `negenc testbed t2i-compare` and `negenc testbed seg-compare`.

Why these sets: the generator, the segmenter and the judge were trained with the *base* encoder and
affirmative text only, so any gain of a swapped encoder on negated prompts is transfer, not training.
Each negated set has an affirmative control on the same subjects and objects (what the swap must
not break). Subjects and negated objects share a theme ("a kitchen with a red cup and no fork"), so
the negated object is one the generator is likely to draw, as in COCO-based prompt sets.

Where the work happens (DESIGN.md: the core package never runs a diffusers pipeline): the t2i
comparison is `eval_t2i.multi.compare_encoders` (its runner, arms, judge protocol, scoring, reports),
called from here with the world's prompts and the world judge; this module touches diffusers only to
quiet its logging, as `negenc t2i` does. The segmentation comparison is `eval_seg.runner.run_arm` on JSONL sets written here; CLIPSeg
is a transformers model, which the core may run.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.errors import InputError

from . import language as L
from .pretrain import ASSETS, BASE_DIR
from .world import COLOURS, OBJECT_THEME, OBJECTS, THEME_PLACE, THEMES

T2I_FORMS = (  # (negated prompt, cue, affirmative control): the cue words the world's splitter reads
    ("a {place} with a {colour} {kind} and no {neg}", "no", "a {place} with a {colour} {kind}"),
    ("a {colour} {kind} in a {place} without a {neg}", "without", "a {colour} {kind} in a {place}"),
    ("a {place} with a {colour} {kind} but not a {neg}", "not", "a {place} with a {colour} {kind}"),
)


def world_prompt_sets(forms_per_kind: int = 3, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(negated, control) entries in eval_t2i's `negation_v1` format: one negated prompt per kind and
    form (the negated object from the subject's theme), and its affirmative twin (no negated concept)."""
    rng = np.random.default_rng(seed)
    negated, control = [], []
    for kind in OBJECTS:
        theme = OBJECT_THEME[kind]
        for f, (form, cue, affirm) in enumerate(T2I_FORMS[:forms_per_kind]):
            neg = str(rng.choice([k for k in THEMES[theme] if k != kind]))
            colour = str(rng.choice(list(COLOURS)))
            slots = {"place": THEME_PLACE[theme], "colour": colour, "kind": kind, "neg": neg}
            pid = f"{kind}_{f}"
            negated.append({"id": pid, "prompt": form.format(**slots), "subject": kind, "negated_concepts": [neg],
                            "negation_type": "object", "cue": cue,
                            "questions": [f"Is there a {kind}?", f"Is there a {neg}?"]})
            control.append({"id": f"{pid}_control", "prompt": affirm.format(**slots), "subject": kind,
                            "negated_concepts": [], "negation_type": "none", "cue": "none",
                            "questions": [f"Is there a {kind}?"]})
    return negated, control


def write_referring_set(out: Path, n: int, seed: int, negated: bool) -> Path:
    """A JSONL set for `eval_seg` (`{"id", "image", "text", "mask"}`): scenes with two objects of one kind
    in different colours; the phrase picks one. Negated: a world referring form ("the cup that is not
    red", `language.REFERRING_FORMS`) naming the *other* object's colour; control: "the blue cup".
    The same seed gives the same scenes and targets for both, so the two sets pair sample by sample."""
    from .world_seg import object_masks, pair_scene

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        scene, a, b = pair_scene(rng, f"ref-{i}", kind=OBJECTS[i % len(OBJECTS)])
        target, other = (a, b) if rng.random() < 0.5 else (b, a)
        form = L.REFERRING_FORMS[int(rng.integers(len(L.REFERRING_FORMS)))]
        t, o = scene.objects[target], scene.objects[other]
        text = form.format(kind=t.kind, value=o.colour) if negated else f"the {t.colour} {t.kind}"
        image, masks = object_masks(scene)
        Image.fromarray(image).save(out / f"{i:04d}.png")
        Image.fromarray(masks[target].astype(np.uint8) * 255).save(out / f"{i:04d}_mask.png")
        Image.fromarray(masks[other].astype(np.uint8) * 255).save(out / f"{i:04d}_other.png")
        lines.append(json.dumps({"id": f"{i:04d}", "image": f"{i:04d}.png", "text": text, "mask": f"{i:04d}_mask.png",
                                 "other_mask": f"{i:04d}_other.png"}))
    path = out / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def target_wins(seg, processor, jsonl: Path, batch_size: int = 64) -> list[float]:
    """Per sample, 1.0 if the mean probability on the referred object exceeds that on the other object of
    its kind (the one a negated expression excludes), else 0.0: which object the model picked, which
    IoU mixes with how well it outlines it. Chance is 0.5."""
    import torch

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    root = jsonl.parent
    wins: list[float] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i: i + batch_size]
        images = [np.asarray(Image.open(root / r["image"]).convert("RGB")) for r in chunk]
        enc = processor(text=[r["text"] for r in chunk], images=images, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = torch.sigmoid(seg(**enc).logits).reshape(len(chunk), *images[0].shape[:2]).numpy()
        for r, p in zip(chunk, probs, strict=True):
            target = np.asarray(Image.open(root / r["mask"])) > 0
            other = np.asarray(Image.open(root / r["other_mask"])) > 0
            wins.append(float(p[target].mean() > p[other].mean()))
    return wins


def encoder_labels(encoders: list[str]) -> dict[str, str]:
    """label -> folder; each folder must hold the DESIGN.md checkpoint layout (checked before any compute)."""
    labels = {}
    for i, path in enumerate(encoders, start=1):
        p = Path(path)
        if not (p / "config.json").is_file() or not (p / "text_encoder" / "config.json").is_file():
            raise InputError(f"--encoder {path}: not an encoder checkpoint folder (expected config.json and "
                             f"text_encoder/ as `negenc train` writes under <out>/model)")
        labels[f"e{i}"] = str(p)
    return labels


def encoder_drift(encoder: str, texts: list[str], base: str | Path = BASE_DIR) -> dict[str, float]:
    """How far an encoder moved from the base on these texts, in the two spaces downstream models read:
    the projected, normalised text embedding (CLIPSeg's FiLM conditioning) and the 77 padded token
    hidden states (a diffusion UNet's cross-attention). Mean cosine similarity; 1.0 = unchanged."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPModel

    from .pretrain import world_tokenizer

    tok = world_tokenizer()
    models = [CLIPModel.from_pretrained(base).eval(), CLIPModel.from_pretrained(encoder).eval()]
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        outs = [m.text_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask) for m in models]
        proj = [F.normalize(m.text_projection(o.pooler_output), dim=-1) for m, o in zip(models, outs, strict=True)]
        tokens = F.cosine_similarity(outs[0].last_hidden_state, outs[1].last_hidden_state, dim=-1)
    return {"projected_cos": float((proj[0] * proj[1]).sum(-1).mean()), "token_cos": float(tokens.mean())}


def _check_seeds(seeds: tuple[int, ...]) -> None:
    if not seeds:
        raise InputError("--seeds: expected at least one seed")


@dataclass
class T2ICompareConfig:
    encoders: list[str]
    out: str = "t2i_compare_out"
    pipeline: str = str(ASSETS / "t2i")
    judge: str = str(ASSETS / "judge")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    forms: int = 2  # prompts per object kind (16 kinds)
    limit: int | None = None  # first N prompts (smoke runs)
    steps: int | None = None  # None: the pipeline's validated setting (`pipeline_sampling`)
    guidance_scale: float | None = None  # None: likewise
    batch_size: int = 16
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    arms: tuple[str, ...] = ("base", "base+negprompt", "swapped", "swapped+negprompt")
    control_arms: tuple[str, ...] = ("base", "swapped")


def pipeline_sampling(folder: str | Path) -> tuple[int, float]:
    """(steps, guidance scale) the world generator was validated with: its `pretrain_info.json` "sampling"
    entry (chosen on `instruments.validation_prompts`, never on the evaluation prompts); 50 and 4.0 for
    a folder without one (the first world generator's settings)."""
    try:
        sampling = json.loads((Path(folder) / "pretrain_info.json").read_text())["sampling"]
        return int(sampling["steps"]), float(sampling["guidance_scale"])
    except (OSError, KeyError, ValueError, TypeError):
        return 50, 4.0


def t2i_compare(cfg: T2ICompareConfig) -> dict:
    """Neg Score on the world's negated prompts and its affirmative control, every arm on the same seeds;
    then the judge's answers checked against the rule-based reader (`instruments.audit_t2i_compare`)."""
    from diffusers.utils import logging as diffusers_logging

    from eval_t2i.generation import GenerationConfig, load_pipeline, resolve_device_dtype
    from eval_t2i.multi import compare_encoders
    from eval_t2i.negscore import NegScoreConfig
    from eval_t2i.prompts import load_prompts
    from eval_t2i.report import image_grid, markdown_table, write_summary
    from eval_t2i.runner import prepare_out_dir

    from .instruments import audit_t2i_compare, audit_table
    from .world_judge import WorldJudge

    _check_seeds(cfg.seeds)
    default_steps, default_guidance = pipeline_sampling(cfg.pipeline)
    cfg = replace(cfg, steps=default_steps if cfg.steps is None else cfg.steps,
                  guidance_scale=default_guidance if cfg.guidance_scale is None else cfg.guidance_scale)
    if cfg.steps < 1 or cfg.batch_size < 1 or not 1 <= cfg.forms <= len(T2I_FORMS):
        raise InputError(f"--steps and --batch-size must be >= 1 and --forms in 1..{len(T2I_FORMS)}; got "
                         f"{cfg.steps}, {cfg.batch_size}, {cfg.forms}")
    encoders = encoder_labels(cfg.encoders)
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
    negated, control = world_prompt_sets(cfg.forms)
    if cfg.limit:
        negated, control = negated[: cfg.limit], control[: cfg.limit]
    fingerprint = {"command": "testbed t2i-compare", "encoders": encoders, "pipeline": cfg.pipeline,
                   "seeds": list(cfg.seeds), "steps": cfg.steps, "guidance_scale": cfg.guidance_scale,
                   "prompts": [p["id"] for p in negated]}
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
    (out / "audit.json").write_text(json.dumps(audit, indent=2, sort_keys=True) + "\n")
    table += "\nJudge (P(yes) > 0.5) against the rule-based reader on the generated images:\n\n" + audit_table(audit)
    seconds = round(time.perf_counter() - start, 1)
    (out / "report.md").write_text(table + f"\nEncoders: {json.dumps(encoders)}. Seeds {list(cfg.seeds)}, "
                                   f"{cfg.steps} steps, guidance {cfg.guidance_scale}, {seconds} s.\n")
    result = {"drift": drift, "negated": results["negated"]["arms"], "control": results["control"]["arms"],
              "paired": results["negated"]["paired"], "control_paired": results["control"]["paired"],
              "encoders": encoders, "seconds": seconds, "audit": audit}
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def t2i_table(negated: dict, control: dict) -> str:
    lines = ["| arm | Neg Score (%) [95% CI] | vs base (pts) [95% CI] | affirmative control (%) [95% CI] |",
             "|---|---:|---:|---:|"]
    for arm, a in negated["arms"].items():
        d = negated["paired"].get(f"{arm} - base")
        c = control["arms"].get(arm.replace("+negprompt", "")) if "+negprompt" not in arm else None
        lines.append(f"| {arm} | {_pct(a['neg_score'])} [{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}] | "
                     + (f"{_pct(d['mean'])} [{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}]" if d else "-") + " | "
                     + (f"{_pct(c['neg_score'])} [{_pct(c['ci95'][0])}, {_pct(c['ci95'][1])}]" if c else "-") + " |")
    extra = [(k, v) for k, v in negated["paired"].items() if k.endswith("- base+negprompt")]
    if extra:
        lines += ["", "| paired over (prompt, seed) | mean (pts) | 95% CI |", "|---|---:|---:|"]
        lines += [f"| {k} | {_pct(v['mean'])} | [{_pct(v['ci95'][0])}, {_pct(v['ci95'][1])}] |" for k, v in extra]
    return "\n".join(lines) + "\n"


@dataclass
class SegCompareConfig:
    encoders: list[str]
    out: str = "seg_compare_out"
    model: str = str(ASSETS / "seg")
    samples: int = 400
    seed: int = 0
    batch_size: int = 32
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


def seg_compare(cfg: SegCompareConfig) -> dict:
    """mIoU / IoU_BIN of the world CLIPSeg, original and with each encoder swapped in, on negated referring
    expressions and their affirmative control (the same scenes and targets), with paired intervals."""
    from eval_seg.datasets import DatasetConfig, load_dataset
    from eval_seg.report import paired_bootstrap
    from eval_seg.runner import SegEvalConfig, check_config, load_clipseg, run_arm, swapped_copy

    if cfg.samples < 1:
        raise InputError(f"--samples must be >= 1, got {cfg.samples}")
    encoders = encoder_labels(cfg.encoders)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not (cfg.resume or cfg.overwrite):
        raise InputError(f"--out {out} is not empty; pass --resume to continue that run or --overwrite to replace it")
    if cfg.overwrite and not cfg.resume:
        for name in ("negated", "control", "data"):
            shutil.rmtree(out / name, ignore_errors=True)
    start = time.perf_counter()
    seg, processor = load_clipseg(cfg.model)
    models = {"original": (seg, None)}
    for label, path in encoders.items():
        arm = "swapped" if len(encoders) == 1 else f"swapped-{label}"
        models[arm] = (swapped_copy(seg, path, cfg.model), path)  # every encoder checked before any compute
    results: dict = {"encoders": encoders, "sets": {}}
    for name, negated in (("negated", True), ("control", False)):
        jsonl = write_referring_set(out / "data" / name, cfg.samples, cfg.seed, negated)
        base_cfg = SegEvalConfig(dataset=DatasetConfig(kind="jsonl", jsonl=str(jsonl)), model=cfg.model,
                                 out=str(out / name), batch_size=cfg.batch_size, device="cpu", dtype="fp32",
                                 resume=cfg.resume, seed=cfg.seed, progress=cfg.progress)
        device, dtype = check_config(base_cfg)
        data = load_dataset(base_cfg.dataset)
        runs = {}
        for arm, (model, path) in models.items():
            arm_cfg = replace(base_cfg, encoder=path)
            runs[arm] = run_arm(copy.deepcopy(model), processor, data, arm_cfg, out / name / arm,
                                "original" if path is None else "swapped", device, dtype)
        ids = [s.id for s in data.samples]
        wins = {arm: target_wins(model, processor, jsonl, cfg.batch_size) for arm, (model, _) in models.items()}
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
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(seg_table(results) + "\n" + drift_table(results["drift"]) + f"\nEncoders: {json.dumps(encoders)}. {cfg.samples} samples "
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


__all__ = ["SegCompareConfig", "T2ICompareConfig", "seg_compare", "t2i_compare", "world_prompt_sets",
           "write_referring_set"]
