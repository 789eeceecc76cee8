"""COCO instance masks from their annotation formats, decoded with our own code (no pycocotools).

- COCO RLE: `{"size": [h, w], "counts": ...}`, run lengths over the column-major (Fortran-order)
  pixels, starting with a run of zeros. `counts` is either a list of ints (uncompressed, as on crowd
  annotations in instances.json) or pycocotools' compressed string: each count is a signed LEB128-like
  varint of 5-bit groups stored as chars offset by 48 (0x20 = "more groups follow", 0x10 in the last
  group = sign), and every count after the second is stored as a difference to the count two before.
- COCO polygons: a list of flat `[x1, y1, x2, y2, ...]` lists, one per part (union).

Polygons are rasterised with PIL's ImageDraw; pycocotools' own rasteriser can differ on boundary pixels.
Why here and not in eval_seg: the referring-data generator (`data.refcocog`) renders the training masks
with the very decoder the evaluation reads its ground truth with; eval_seg imports it from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


class MaskFormatError(ValueError):
    """A segmentation entry that does not follow its format (the loaders add file and entry)."""


def rle_counts_from_string(s: str | bytes) -> list[int]:
    """Decode pycocotools' compressed RLE string into run lengths (the algorithm of its `rleFrString`)."""
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise MaskFormatError("compressed RLE string ends inside a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise MaskFormatError(f"compressed RLE string has an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (compressed string or counts list) -> (h, w) bool mask."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskFormatError("RLE must be an object with 'size' [h, w] and 'counts'")
    size = rle["size"]
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        raise MaskFormatError(f"RLE 'size' must be [height, width] ints, got {size!r}")
    h, w = size
    counts = rle_counts(rle["counts"])
    if any(v < 0 for v in counts):
        raise MaskFormatError("RLE has a negative run length")
    if sum(counts) != h * w:
        raise MaskFormatError(f"RLE run lengths sum to {sum(counts)}, but size {h}x{w} has {h * w} pixels")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()  # column-major


def draw_polygons(polygons: Sequence[Sequence[tuple[float, float]]], height: int, width: int, outline: bool) -> np.ndarray:
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    for pts in polygons:
        if len(pts) >= 2:
            draw.polygon([tuple(p) for p in pts], fill=1, outline=1 if outline else None)
    return np.asarray(img, dtype=bool)


def coco_polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygon segmentation (flat coordinate lists) -> (h, w) bool mask, the union of the parts."""
    parts = []
    for i, poly in enumerate(polygons):
        if not isinstance(poly, Sequence) or len(poly) < 6 or len(poly) % 2:
            n = len(poly) if isinstance(poly, Sequence) else type(poly).__name__
            raise MaskFormatError(f"polygon {i} must be a flat list of >= 3 x,y pairs, got {n} values")
        if not all(isinstance(v, (int, float)) for v in poly):
            raise MaskFormatError(f"polygon {i} has a non-numeric coordinate")
        parts.append([(float(poly[j]), float(poly[j + 1])) for j in range(0, len(poly), 2)])
    return draw_polygons(parts, height, width, outline=False)


def coco_segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """Any COCO `segmentation` value (polygons, RLE with string or list counts) -> (h, w) bool mask."""
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (height, width):
            raise MaskFormatError(f"RLE size {list(mask.shape)} differs from the image size [{height}, {width}]")
        return mask
    if isinstance(segmentation, list):
        return coco_polygons_to_mask(segmentation, height, width)
    raise MaskFormatError(f"segmentation must be a polygon list or an RLE object, got {type(segmentation).__name__}")


def rle_counts(raw) -> list[int]:
    """Run lengths of a COCO RLE's `counts`: a compressed string (or bytes) or a plain list of ints."""
    if isinstance(raw, (str, bytes)):
        return rle_counts_from_string(raw)
    if isinstance(raw, list) and all(isinstance(v, int) for v in raw):
        return raw
    raise MaskFormatError("RLE 'counts' must be a compressed string or a list of ints")


def check_coco_segmentation(segmentation, height: int, width: int) -> None:
    """Validate a segmentation without rasterising it (RLE counts are decoded, which is cheap)."""
    if isinstance(segmentation, dict):
        counts = rle_counts(segmentation.get("counts"))
        if list(segmentation.get("size", [])) != [height, width]:
            raise MaskFormatError(f"RLE size {segmentation.get('size')!r} differs from the image size [{height}, {width}]")
        if sum(counts) != height * width or any(v < 0 for v in counts):
            raise MaskFormatError(f"RLE run lengths sum to {sum(counts)}, expected {height * width}")
        return
    if not isinstance(segmentation, list):
        raise MaskFormatError(f"segmentation must be a polygon list or an RLE object, got {type(segmentation).__name__}")
    coco_polygons_to_mask(segmentation, 1, 1)  # checks every coordinate; a 1x1 canvas costs nothing
