"""A rule-based reader of world images: which (kind, colour) sits in each of the four cells, with no
learned weights.

Why: the world judge is a CNN trained on renders; on generated images it can read things that are
not there (an empty reddish background as "a red fork"). This reader knows the renderer instead of
learning it: the palette (`scenes.COLOURS`), the theme backgrounds (`scenes.BACKGROUND`), the glyphs
(`scenes._shape` at `SIZE_PIXELS`) and the jitter `render` allows. It is exact on renders (every object
pixel there carries one palette colour plus a shift of std 6; background pixels are a theme colour
plus noise of std 8, so no pixel is ever nearer the wrong side) and, on generated images, it is the
second opinion the judge is checked against. Where nothing matches well it says so ("empty",
"unreadable") instead of guessing.

How a cell is read:
1. Background: the median of the image's pixels that are nearer a theme background than any palette
   colour (generated backgrounds are often tinted, so the image's own background is used, not the
   theme's nominal colour).
2. Paint: a pixel is paint of palette colour c when c is its nearest among the palette and that
   background, and it lies within `max_colour_distance` of c (a washed-out smear is not paint).
3. Fewer than `min_pixels` paint pixels in the cell: "empty". Otherwise the cell's colour is its most
   frequent paint colour, and its paint silhouette is matched (intersection over union) against every
   glyph of every kind at both sizes and every allowed offset; the best IoU >= `min_iou` reads the
   kind, else the cell is "unreadable".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..world.scenes import (
    BACKGROUND,
    CELL,
    CELL_ORIGIN,
    CELLS,
    COLOURS,
    IMAGE_SIZE,
    OBJECT_SHAPE,
    SIZE_PIXELS,
    _shape,
)

COLOUR_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)  # (6, 3)
THEME_COLOURS = np.array(list(BACKGROUND.values()), dtype=np.float32)  # (4, 3)
EMPTY, UNREADABLE, OBJECT = "empty", "unreadable", "object"


@dataclass(frozen=True)
class ReaderConfig:
    """Thresholds of the reader (chosen on generated images of the validation prompts, never on the
    evaluation prompts; on renders any values in a wide range are exact)."""

    min_pixels: int = 12  # fewer paint pixels in a cell than this: empty (the smallest glyph has 26)
    min_iou: float = 0.5  # a silhouette whose best glyph IoU is below this is unreadable, not guessed
    max_colour_distance: float = 90.0  # RGB distance beyond which a pixel is no palette colour's paint


@dataclass(frozen=True)
class CellReading:
    """What the reader saw in one cell: status is "object", "empty" or "unreadable"."""

    cell: str
    status: str
    kind: str | None = None
    colour: str | None = None
    size: str | None = None
    iou: float = 0.0
    pixels: int = 0


@lru_cache(maxsize=1)
def glyph_templates() -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
    """Every (kind, size) glyph at every offset `render` can place it in a cell: a (T, 256) 0/1 matrix
    and the (kind, size) of each row. The offsets mirror `render`'s jitter clamp."""
    rows, labels = [], []
    for kind, shape in OBJECT_SHAPE.items():
        for size, n in SIZE_PIXELS.items():
            glyph = _shape(shape, n)
            centre = (CELL - n) // 2
            offsets = range(max(0, centre - 2), min(CELL - n, centre + 2) + 1)
            for jy in offsets:
                for jx in offsets:
                    m = np.zeros((CELL, CELL), dtype=np.float32)
                    m[jy: jy + n, jx: jx + n] = glyph
                    rows.append(m.ravel())
                    labels.append((kind, size))
    return np.stack(rows), tuple(labels)


def as_array(image) -> np.ndarray:
    """A PIL image or uint8 array -> float32 (32, 32, 3); other sizes are resized as the judge does."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    arr = np.asarray(image, dtype=np.float32)
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected a {IMAGE_SIZE}x{IMAGE_SIZE} RGB image, got an array of shape {arr.shape}")
    return arr


def palette_distances(px: np.ndarray) -> np.ndarray:
    """(N, 3) pixels -> (N, 6) RGB distances to the palette, reading render's uint8 wrap-around.

    Why the wrap: `render` adds a colour shift of std 6 to the palette colour and casts to uint8
    without clipping, so a channel past 255 wraps to a small value (white (240, 240, 240) + 17 in red
    becomes (1, ...)); about 2% of white objects carry such a channel. Where a palette channel is
    near the top (>= 235) and the pixel's is near zero (< 32), the pixel's channel is read as +256.
    """
    high = PALETTE[None] >= 235  # (1, 6, 3)
    low = px[:, None, :] < 32  # (N, 1, 3)
    unwrapped = np.where(high & low, px[:, None, :] + 256, px[:, None, :])
    return np.linalg.norm(unwrapped - PALETTE[None], axis=-1)


def background_colour(img: np.ndarray) -> np.ndarray:
    """The image's own background: the median of pixels nearer a theme colour than any palette colour
    (the whole image's median when fewer than a cell's worth of pixels qualify)."""
    px = img.reshape(-1, 3)
    d_theme = np.linalg.norm(px[:, None] - THEME_COLOURS[None], axis=-1).min(1)
    d_paint = palette_distances(px).min(1)
    bg = px[d_theme < d_paint]
    return np.median(bg if len(bg) >= CELL * CELL else px, axis=0)


def paint_labels(img: np.ndarray, cfg: ReaderConfig) -> np.ndarray:
    """Per pixel, the palette index of its paint, or -1 for background / no colour's paint."""
    bg = background_colour(img)
    px = img.reshape(-1, 3)
    d = np.concatenate([palette_distances(px), np.linalg.norm(px - bg, axis=-1)[:, None]], axis=1)  # 6 = bg
    label = d.argmin(-1)
    nearest = d[np.arange(len(px)), label]
    paint = (label < len(PALETTE)) & (nearest <= cfg.max_colour_distance)
    return np.where(paint, label, -1).reshape(img.shape[:2])


def read_cell(labels: np.ndarray, cell: str, cfg: ReaderConfig) -> CellReading:
    oy, ox = CELL_ORIGIN[cell]
    patch = labels[oy: oy + CELL, ox: ox + CELL]
    mask = patch >= 0
    n = int(mask.sum())
    if n < cfg.min_pixels:
        return CellReading(cell, EMPTY, pixels=n)
    colour = COLOUR_NAMES[int(np.bincount(patch[mask], minlength=len(PALETTE)).argmax())]
    templates, names = glyph_templates()
    flat = mask.ravel().astype(np.float32)
    inter = templates @ flat
    iou = inter / (templates.sum(1) + n - inter)
    best = int(iou.argmax())
    kind, size = names[best]
    if iou[best] < cfg.min_iou:
        return CellReading(cell, UNREADABLE, kind, colour, size, float(iou[best]), n)
    return CellReading(cell, OBJECT, kind, colour, size, float(iou[best]), n)


def read_image(image, cfg: ReaderConfig | None = None) -> list[CellReading]:
    """The four cells of one image, in `scenes.CELLS` order."""
    cfg = cfg or ReaderConfig()
    labels = paint_labels(as_array(image), cfg)
    return [read_cell(labels, cell, cfg) for cell in CELLS]


def found(readings: list[CellReading]) -> set[tuple[str, str, str]]:
    """The (cell, kind, colour) triples read as objects (unreadable and empty cells hold none)."""
    return {(r.cell, r.kind, r.colour) for r in readings if r.status == OBJECT}


def reader_says_yes(readings: list[CellReading], kind: str, colour: str | None = None) -> bool:
    """'Is there a [colour] kind?': some cell is read as that kind (and colour, when one is asked)."""
    return any(r.status == OBJECT and r.kind == kind and (colour is None or r.colour == colour) for r in readings)


__all__ = ["EMPTY", "OBJECT", "UNREADABLE", "CellReading", "ReaderConfig", "found", "read_image",
           "reader_says_yes"]
