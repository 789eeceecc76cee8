"""Neg Score for several negation encoders on one pipeline: the base arms once, the swapped arms per encoder.

Why: comparing encoders (or checkpoints) must use the same prompts, seeds and judge, and the base arms
do not depend on the encoder, so they are generated once. Each part is an ordinary resumable
`run_negscore` run in `out/runs/<part>/`; the records are then relabelled (`swapped` ->
`swapped-<label>` when there are several encoders), their images copied under `out/images/`, and one
summary is computed with `negscore.summarize`, so the scoring and the bootstrap stay in one place.
Besides each arm against `base`, every swapped arm is paired against `base+negprompt` (is the swap
better than the training-free rival?).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from negation_encoder.distributed import processes

from .generation import ARMS, ArmSwitcher, GenerationConfig
from .negscore import NegScoreConfig, run_negscore, summarize
from .prompts import PromptItem
from .runner import image_relpath, prepare_out_dir
from .scoring import image_score, paired_difference


def arm_label(arm: str, label: str | None) -> str:
    """`swapped+negprompt` of encoder `e2` -> `swapped-e2+negprompt`; base arms and a single encoder keep their name."""
    if label is None or not ARMS[arm].swapped:
        return arm
    return arm.replace("swapped", f"swapped-{label}", 1)


def check_encoders(pipe, encoders: Mapping[str, str]) -> None:
    """Load every encoder and swap it in and out once, before any image: one that does not fit the
    pipeline (width, vocabulary, positions) is one line, exit 2, not a failure after the base arms ran."""
    for path in encoders.values():
        ArmSwitcher(pipe, path).use(ARMS["base"])


def compare_encoders(pipe, items: Sequence[PromptItem], encoders: Mapping[str, str], judge, out: str | Path,
                     config: NegScoreConfig, generation: GenerationConfig, resume: bool = False,
                     overwrite: bool = False, splitter=None) -> tuple[dict, list[dict], list[str]]:
    """Run `config.arms` for every encoder in `encoders` (label -> path); returns (summary, records, arms)."""
    out = Path(out)
    check_encoders(pipe, encoders)
    base_arms = tuple(a for a in config.arms if not ARMS[a].swapped)
    swapped_arms = tuple(a for a in config.arms if ARMS[a].swapped)
    several = len(encoders) > 1
    parts: list[tuple[str, str | None, tuple[str, ...]]] = []
    if base_arms:
        parts.append(("base", None, base_arms))
    if swapped_arms:
        parts += [(label, path, swapped_arms) for label, path in encoders.items()]
    records: list[dict] = []
    arms: list[str] = []
    for part, path, part_arms in parts:
        sub = out / "runs" / part
        fingerprint = {"arms": list(part_arms), "encoder": path, "seeds": list(config.seeds),
                       "prompts": [i.id for i in items], "generation": vars(generation)}
        prepare_out_dir(sub, fingerprint, resume=resume, overwrite=overwrite or not resume)
        switcher = ArmSwitcher(pipe, path)
        try:
            _, recs = run_negscore(items, switcher, judge, sub, replace(config, arms=part_arms), generation, splitter)
        finally:
            switcher.use(ARMS["base"])  # the next part's switcher must find the pipeline's own encoder
        label = part if (several and path is not None) else None
        relabelled = [{**r, "arm": arm_label(r["arm"], label), "encoder": path} for r in recs]
        for r in relabelled:
            r["image"] = image_relpath(r["arm"], r["key"], int(r["seed"]))
        processes().on_main(lambda recs=recs, relabelled=relabelled, sub=sub: _copy_images(sub, recs, out, relabelled))
        records += relabelled
        arms += [arm_label(a, label) for a in part_arms]
    summary = summarize(records, arms, config.resamples, config.boot_seed)
    scores = {a: {(r["key"], int(r["seed"])): float(image_score(r["probabilities"][0], r["probabilities"][1:]))
                  for r in records if r["arm"] == a} for a in arms}
    if "base+negprompt" in scores:
        for arm in arms:
            if ARMS[_plain(arm)].swapped and scores[arm]:
                d = paired_difference(scores["base+negprompt"], scores[arm], config.resamples, config.boot_seed)
                summary["paired"][f"{arm} - base+negprompt"] = {"mean": d.mean, "ci95": [d.low, d.high],
                                                                "n_pairs": len(scores[arm])}
    summary["encoders"] = dict(encoders)
    return summary, records, arms


def _copy_images(sub: Path, recs: list[dict], out: Path, relabelled: list[dict]) -> None:
    """The part's images under their relabelled names in `out` (the main process writes, the others wait)."""
    for r, new in zip(recs, relabelled, strict=True):
        (out / new["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub / r["image"], out / new["image"])


def _plain(arm: str) -> str:
    """The ARMS name behind a relabelled arm (`swapped-e2+negprompt` -> `swapped+negprompt`)."""
    if not arm.startswith("swapped"):
        return arm
    return "swapped+negprompt" if arm.endswith("+negprompt") else "swapped"
