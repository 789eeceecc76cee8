"""Ground-truth masks from the real annotation formats, decoded with our own code (no pycocotools).

- COCO RLE and polygons: `negation_encoder.data.masks` (shared with the referring-data generator, which
  renders training masks with the same decoder), re-exported here.
- PhraseCut polygons: per instance, a list of polygons of `[x, y]` points; coordinates are truncated
  to int and drawn with outline and fill, as PhraseCut's `polygons_to_mask` does.
- PNG: nonzero = foreground.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.data.masks import (  # noqa: F401 - re-exported: eval_seg's mask API
    MaskFormatError,
    check_coco_segmentation,
    coco_polygons_to_mask,
    coco_segmentation_to_mask,
    decode_rle,
    draw_polygons,
    rle_counts,
    rle_counts_from_string,
)


def phrasecut_polygons_to_mask(instances: Sequence, height: int, width: int) -> np.ndarray:
    """PhraseCut `Polygons` (instances -> polygons -> [x, y] points) -> (h, w) bool mask of all instances."""
    polys = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, list):
            raise MaskFormatError(f"Polygons[{i}] must be a list of polygons")
        for j, poly in enumerate(inst):
            if not isinstance(poly, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in poly):
                raise MaskFormatError(f"Polygons[{i}][{j}] must be a list of [x, y] points")
            polys.append([(int(x), int(y)) for x, y in poly])
    return draw_polygons(polys, height, width, outline=True)


def load_png_mask(path: str | Path) -> np.ndarray:
    """A mask image (any mode; multi-channel masks use their first channel) -> bool, nonzero = foreground."""
    with Image.open(path) as img:
        arr = np.asarray(img)
    return (arr[..., 0] if arr.ndim == 3 else arr) != 0
