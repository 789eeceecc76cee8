"""What a run leaves for people: a markdown summary, an overlay PNG, and the paired comparison."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from negation_encoder.stats import Interval

from .metrics import REPORT_THRESHOLDS


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def metrics_markdown(title: str, metrics: dict, info: dict) -> str:
    """A table of fgIoU / IoU_BIN / mIoU by threshold, then AP and the run's facts."""
    lines = [f"# {title}", ""]
    lines += [f"- {k}: `{v}`" for k, v in info.items()]
    lines += ["", "| threshold | fgIoU | IoU_BIN | mIoU |", "|---|---|---|---|"]
    for t in REPORT_THRESHOLDS:
        lines.append(f"| {t} | {_fmt(metrics[f'fgiou_{t}'])} | {_fmt(metrics[f'iou_bin_{t}'])} | "
                     f"{_fmt(metrics[f'miou_{t}'])} |")
    lines.append(f"| best | {_fmt(metrics['fgiou_best'])} (t={metrics['fgiou_best_t']}) | "
                 f"{_fmt(metrics['iou_bin_best'])} (t={metrics['iou_bin_best_t']}) | "
                 f"{_fmt(metrics['miou_best'])} (t={metrics['miou_best_t']}) |")
    lines += ["", f"AP: {_fmt(metrics['ap'])} over {metrics['n_samples']} samples. fgIoU and IoU_BIN sum pixels "
              "over the dataset; mIoU averages per-sample IoUs (each referring expression is its own class, "
              "as CLIPSeg does on PhraseCut). The papers' tables use threshold 0.3.", ""]
    return "\n".join(lines)


def comparison_markdown(a: dict, b: dict, diff: Interval, names: tuple[str, str]) -> str:
    lines = [f"# {names[0]} vs {names[1]}", "", f"| metric | {names[0]} | {names[1]} | difference |",
             "|---|---|---|---|"]
    for key in ("miou_0.3", "fgiou_0.3", "iou_bin_0.3", "miou_best", "fgiou_best", "ap"):
        va, vb = a.get(key), b.get(key)
        delta = None if va is None or vb is None else vb - va
        lines.append(f"| {key} | {_fmt(va)} | {_fmt(vb)} | {_fmt(delta)} |")
    lines += ["", f"Paired per-sample IoU at 0.3 ({names[1]} − {names[0]}): mean {diff.mean:+.4f}, "
              f"95% bootstrap interval [{diff.low:+.4f}, {diff.high:+.4f}] over {diff.n} samples "
              f"({diff.resamples} resamples, seed {diff.seed}).", ""]
    return "\n".join(lines)


def _tile(image: Image.Image, mask: np.ndarray, prob: np.ndarray, caption: str, size: int = 224) -> Image.Image:
    """Image at mask size with ground truth in green and prediction (p > 0.3) in red, then a caption."""
    base = np.asarray(image.convert("RGB").resize((mask.shape[1], mask.shape[0])), dtype=np.float32)
    over = base.copy()
    over[mask] = 0.5 * over[mask] + 0.5 * np.array([0, 255, 0])
    pred = prob > 0.3
    over[pred] = 0.5 * over[pred] + 0.5 * np.array([255, 0, 0])
    tile = Image.fromarray(over.astype(np.uint8)).resize((size, size))
    out = Image.new("RGB", (size, size + 28), "white")
    out.paste(tile, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate((caption[:36], caption[36:72])):
        draw.text((3, size + 2 + 12 * i), line, fill="black")
    return out


def overlay_png(rows: Sequence[tuple[str, Sequence[tuple[Image.Image, np.ndarray, np.ndarray, str]]]]) -> bytes:
    """Rows of tiles (e.g. "best", "worst"), each tile (image, gt mask, probabilities, caption) -> PNG bytes."""
    size, label_w = 224, 60
    cols = max((len(tiles) for _, tiles in rows), default=1) or 1
    canvas = Image.new("RGB", (label_w + cols * (size + 4), max(len(rows), 1) * (size + 32)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, tiles) in enumerate(rows):
        y = r * (size + 32)
        draw.text((4, y + size // 2), label, fill="black")
        for c, (img, mask, prob, caption) in enumerate(tiles):
            canvas.paste(_tile(img, mask, prob, caption, size), (label_w + c * (size + 4), y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
