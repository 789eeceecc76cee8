"""`negenc testbed seg-compare`: mIoU / IoU_BIN and object choice of the world's frozen CLIPSeg, original
and with each encoder swapped in, plain and through the training-free split route; and
`negenc testbed fit-seg-route`, which fits that route on training scenes.

The comparison is `eval_seg.runner.run_arm` on the JSONL sets of `referring.write_referring_set`; CLIPSeg
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
from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.errors import InputError
from negation_encoder.results import provenance
from negation_encoder.runio import RunFolder, atomic_write_json, atomic_write_text

from ..instruments.base_clip import ASSETS
from ..world import language as L
from ..world.grammar import HELDOUT_REFERRING_FORMS
from ..world.prompts import HELDOUT_PROMPT_SEED
from ..world.referring import referring_samples, write_referring_set
from .encoders import drift_table, encoder_drift, encoder_labels

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


SEG_COMPARE_FILES = ("negated", "control", "data", "results.json", "report.md", "run_config.json")
# seg-compare's sets: {name: (negated forms, scene seed offset)}; the held-out scenes are drawn apart from
# the evaluated ones so a held-out number never reuses an evaluated image.
REFERRING_SETS = {"evaluation": (L.REFERRING_FORMS, 0), "heldout": (HELDOUT_REFERRING_FORMS, HELDOUT_PROMPT_SEED)}


@dataclass


class SegCompareConfig(Validated):
    """`negenc testbed seg-compare`: the world CLIPSeg, original vs swapped, plain vs split route."""

    encoders: tuple[str, ...] = option(help="fine-tuned encoder folders (<out>/run/model of `negenc demo`), comma list",
                                       flag="--encoder")
    out: str = option("seg_compare_out", "output folder")
    model: str = option(str(ASSETS / "seg"), "CLIPSeg folder (default: the committed world segmenter)")
    samples: int = option(400, "referring expressions per set (negated, control)")
    seed: int = option(0, "seed of the referring sets and the bootstrap")
    prompts: str = option("evaluation", "which referring expressions: evaluation (the scored forms) or heldout "
                          "(constructions no fine-tuning text uses, drawn on other scenes; reported, never chosen on)")
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
        if self.prompts not in REFERRING_SETS:
            p.append(f"prompts must be one of {', '.join(REFERRING_SETS)}, got {self.prompts!r}")
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
    folder = RunFolder(out, SEG_COMPARE_FILES)
    with folder.lock():  # a second seg-compare into this folder is refused (one line), not interleaved
        folder.prepare(cfg.resume, cfg.overwrite)
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
        forms, offset = REFERRING_SETS[cfg.prompts]
        results: dict = {"encoders": encoders, "prompt_set": cfg.prompts, "sets": {},
                         "split_route": None if route is None else {"weight": route.weight, "fit": route.fit}}
        for name, negated in (("negated", True), ("control", False)):
            jsonl = write_referring_set(out / "data" / name, cfg.samples, cfg.seed + offset, negated, forms)
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
