"""The demo's drop-in measurement: one encoder swapped into the world's frozen segmenter and generator at
small sizes (both comparisons), its report section, and the fingerprint of the instruments it measures
with (`negenc testbed compare` saves it with its settings)."""

from __future__ import annotations

from pathlib import Path

from ..instruments.base_clip import ASSETS
from .seg_compare import SegCompareConfig, seg_compare
from .t2i_compare import GENERATORS, T2ICompareConfig, t2i_compare


def instruments_fingerprint(folders: tuple[str | Path, ...] | None = None) -> str:
    """Hash of the bytes of the frozen models `drop_in` measures with (by default the committed generator,
    segmenter and judge). Why: a comparison resumed after one of them was retrained would otherwise mix
    transfer numbers of two instruments in one table (`compare` saves this with its settings)."""
    from negation_encoder.training.checks import data_fingerprint

    folders = folders or (ASSETS / "t2i", ASSETS / "seg", ASSETS / "judge")  # the IF-style generator: compare's columns
    files = [f for d in folders for f in sorted(Path(d).rglob("*")) if f.is_file()]
    return data_fingerprint([str(f) for f in files])


def drop_in(encoder: str | Path, out: str | Path, seg_samples: int = 200, t2i_prompts: int = 16,
            seeds: tuple[int, ...] = (0, 1), progress: bool = False, t2i_steps: int | None = None,
            generators: tuple[str, ...] = tuple(GENERATORS)) -> dict:
    """A small real measurement of the drop-in (the demo's last step): the encoder swapped into the world's
    frozen segmenter (`seg_compare`, `seg_samples` expressions per set) and generator (`t2i_compare`, one
    prompt per object kind, `t2i_prompts` at most, `seeds`), beside the training-free routes. Small, so its
    intervals are wide; `negenc testbed seg-compare` / `t2i-compare` run the full sets.

    `t2i` holds the IF-style generator's numbers (the key older results have), `t2i_generators` the latent
    generators' (`sd`, `sdxl`), each with the same keys."""
    out = Path(out)
    seg = seg_compare(SegCompareConfig(encoders=(str(encoder),), out=str(out / "seg"), samples=seg_samples,
                                       overwrite=True, progress=progress))
    steps = {} if t2i_steps is None else {"steps": t2i_steps}
    t2i = t2i_compare(T2ICompareConfig(encoders=(str(encoder),), out=str(out / "t2i"), forms=1, limit=t2i_prompts,
                                       seeds=seeds, overwrite=True, progress=progress, generators=generators,
                                       **steps))["generators"]
    keep = ("miou_0.3", "target_wins", "paired_iou_0.3_vs_original")
    result = {"seg": {name: {arm: {k: e[k] for k in keep if k in e} for arm, e in arms.items()}
                      for name, arms in seg["sets"].items()}}
    if "if" in t2i:
        result.update(t2i=_t2i_entry(t2i["if"]), t2i_paired=t2i["if"]["paired"])
    latent = {name: {**_t2i_entry(r), "paired": r["paired"]} for name, r in t2i.items() if name != "if"}
    if latent:
        result["t2i_generators"] = latent
    result["settings"] = {"seg_samples": seg_samples, "t2i_prompts": t2i_prompts, "seeds": list(seeds),
                          "generators": list(generators)}
    return result


def _t2i_entry(r: dict) -> dict:
    return {name: {arm: {k: a[k] for k in ("neg_score", "ci95", "subject_rate", "negated_rate") if k in a}
                   for arm, a in r[name].items()} for name in ("negated", "control")}


def t2i_by_generator(d: dict) -> dict[str, dict]:
    """{generator: {negated, control}} of a `drop_in` result, the IF-style one first."""
    return {**({"if": d["t2i"]} if "t2i" in d else {}), **d.get("t2i_generators", {})}


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
    lines += ["", "| generator | generation arm | Neg Score (%) | subject present (%) | negated object present (%) | "
              "control subject (%) |", "|---|---|---:|---:|---:|---:|"]
    for gen, r in t2i_by_generator(d).items():
        for arm, a in r["negated"].items():
            rates = [f"{100 * a[k]:.1f}" if k in a else "-" for k in ("subject_rate", "negated_rate")]
            c = r["control"].get(arm, {})
            control = f"{100 * c['subject_rate']:.1f}" if "subject_rate" in c else "-"
            lines.append(f"| {gen} | {arm} | {100 * a['neg_score']:.1f} | {rates[0]} | {rates[1]} | {control} |")
    return "\n".join(lines) + "\n"
