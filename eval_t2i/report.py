"""What a person reads: `summary.json`, a markdown table, and a PNG grid (PIL only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from negation_encoder.runio import atomic_save_image, atomic_write_json

from .runner import image_relpath


def write_summary(out: Path, summary: dict) -> Path:
    return atomic_write_json(out / "summary.json", summary)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _resamples(summary: dict):
    # a summary.json may carry the count under its older name n_boot; it still renders
    return summary.get("bootstrap_resamples", summary.get("n_boot"))


def markdown_table(summary: dict, title: str = "Neg Score") -> str:
    """Arms with their interval, paired differences, and per-type / per-cue means (percent)."""
    lines = [f"## {title}", "",
             f"An image scores 1 only if the judge says the subject is present and every negated concept absent "
             f"({summary.get('yes_rule', '')}). 95% intervals: percentile bootstrap over "
             f"{summary.get('bootstrap_unit', 'prompt')}s ({_resamples(summary)} resamples, seed "
             f"{summary.get('bootstrap_seed')}).", "",
             "| arm | Neg Score (%) | 95% CI | images | prompts |", "|---|---:|---:|---:|---:|"]
    for arm, a in summary["arms"].items():
        lines.append(f"| {arm} | {_pct(a['neg_score'])} | [{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}] | "
                     f"{a['n_images']} | {a['n_prompts']} |")
    if summary.get("paired"):
        lines += ["", "| paired difference over (prompt, seed) | mean (pts) | 95% CI | pairs |", "|---|---:|---:|---:|"]
        for name, d in summary["paired"].items():
            lines.append(f"| {name} | {_pct(d['mean'])} | [{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}] | "
                         f"{d['n_pairs']} |")
    for key, label in (("by_negation_type", "negation type"), ("by_cue", "cue")):
        groups = sorted({g for a in summary["arms"].values() for g in a[key]})
        if not groups:
            continue
        arms = list(summary["arms"])
        lines += ["", f"| {label} | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
        for g in groups:
            cells = [f"{_pct(summary['arms'][a][key][g]['mean'])} (n={summary['arms'][a][key][g]['n_images']})"
                     if g in summary["arms"][a][key] else "-" for a in arms]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if "splitter_agreement" in summary and summary["splitter_agreement"].get("n"):
        s = summary["splitter_agreement"]
        lines += ["", f"Splitter vs the file's own split ({s['n']} prompts): negated concepts exact "
                      f"{_pct(s['negated_exact'])}%, recall {_pct(s['negated_recall'])}%, affirmative exact "
                      f"{_pct(s['affirmative_exact'])}%."]
    return "\n".join(lines) + "\n"


def tifa_table(summary: dict) -> str:
    lines = ["## TIFA-style score", "", f"Method: {summary['method']}.", "",
             "| arm | tifa_average (%) | captions | questions |", "|---|---:|---:|---:|"]
    for arm, a in summary["arms"].items():
        lines.append(f"| {arm} | {_pct(a['tifa_average'])} | {a['n_captions']} | {a['n_questions']} |")
    types = sorted({t for a in summary["arms"].values() for t in a["accuracy_by_type"]})
    if types:
        arms = list(summary["arms"])
        lines += ["", "| element type | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
        for t in types:
            lines.append(f"| {t} | " + " | ".join(_pct(summary["arms"][a]["accuracy_by_type"].get(t, float("nan")))
                                                  for a in arms) + " |")
    return "\n".join(lines) + "\n"


def image_grid(out: Path, records: Sequence[dict], arms: Sequence[str], seeds: Sequence[int],
               max_rows: int = 16, cell: int = 128, path: Path | None = None) -> Path:
    """Rows = prompts, columns = arms x seeds; each cell is the image with a green (score 1) or red
    (score 0) frame, and each row starts with its prompt, so the numbers can be checked by eye."""
    by_key = {(r["arm"], r["key"], int(r["seed"])): r for r in records}
    keys = list(dict.fromkeys(r["key"] for r in records))[:max_rows]
    label_w, head_h = 220, 28
    cols = [(a, s) for a in arms for s in seeds]
    grid = Image.new("RGB", (label_w + cell * len(cols), head_h + cell * len(keys)), "white")
    draw = ImageDraw.Draw(grid)
    for c, (arm, seed) in enumerate(cols):
        draw.text((label_w + c * cell + 4, 4), f"{arm}", fill="black")
        draw.text((label_w + c * cell + 4, 15), f"seed {seed}", fill="black")
    for r, key in enumerate(keys):
        y = head_h + r * cell
        prompt = next((rec.get("prompt") or rec.get("caption") or key) for rec in records if rec["key"] == key)
        for i in range(0, min(len(prompt), 180), 34):
            draw.text((4, y + 4 + 11 * (i // 34)), prompt[i: i + 34], fill="black")
        for c, (arm, seed) in enumerate(cols):
            rec = by_key.get((arm, key, seed))
            if rec is None or not (out / image_relpath(arm, key, seed)).exists():
                continue
            with Image.open(out / rec["image"]) as im:
                thumb = im.convert("RGB").resize((cell - 6, cell - 6), Image.NEAREST)
            x = label_w + c * cell
            if "score" in rec:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill="#2a2" if rec["score"] else "#c22")
            grid.paste(thumb, (x + 3, y + 3))
    path = path or out / "grid.png"
    atomic_save_image(path, grid)
    return path
