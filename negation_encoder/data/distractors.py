"""Counterfactual distractor images from real annotations (a `pipelines.DistractorSource`).

For a negated caption ("a kitchen with a cup and a plate, but no fork") the hardest wrong image in the
text-to-image direction is the same scene plus a fork. Real data has no such twin, so the closest
stand-in is mined: among images whose COCO instance annotations contain the negated category, those
that share the most of the caption's objects, then those with the fewest other categories (the
scene least unlike the original). TripletCLIP-style generation or inpainting of the exact twin is out
of scope; the testbed, which can render the exact twin, has its own source
(`negation_testbed.world.datagen.WorldDistractors`).

COCO instances: `instances_train2017.json` (or 2014) = {images: [{id, file_name}], categories:
[{id, name}], annotations: [{image_id, category_id, ...}]}.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from ..errors import InputError
from .coco import _load_json, _require
from .pipelines import CaptionItem
from .validation import mentions


def load_coco_instances(path: str | os.PathLike) -> dict[str, frozenset[str]]:
    """{file_name: category names annotated in the image} from a COCO instances file."""
    obj = _load_json(path, "COCO instances with 'images', 'categories' and 'annotations'")
    for key in ("images", "categories", "annotations"):
        if not isinstance(obj.get(key), list):
            raise InputError(f"{path}: top-level key {key!r} must be a list (COCO instances format)")
    files: dict[int, str] = {}
    for i, img in enumerate(obj["images"]):
        _require(path, f"images[{i}]", img, ("id", "file_name"))
        files[img["id"]] = img["file_name"]
    names: dict[int, str] = {}
    for i, cat in enumerate(obj["categories"]):
        _require(path, f"categories[{i}]", cat, ("id", "name"))
        names[cat["id"]] = str(cat["name"])
    found: dict[str, set[str]] = {f: set() for f in files.values()}
    for i, ann in enumerate(obj["annotations"]):
        _require(path, f"annotations[{i}]", ann, ("image_id", "category_id"))
        if ann["image_id"] not in files or ann["category_id"] not in names:
            raise InputError(f"{path}: annotations[{i}] refers to image_id {ann['image_id']} / category_id "
                             f"{ann['category_id']}, which is not in 'images' / 'categories'")
        found[files[ann["image_id"]]].add(names[ann["category_id"]])
    return {f: frozenset(c) for f, c in found.items()}


class AnnotationDistractorMiner:
    """Mines the closest annotated images that contain the negated concept (deterministic ranking).

    Rank: most caption objects shared (the caption's objects are the item's known `objects` plus the
    category names the caption mentions), then fewest categories outside the caption and the concept,
    then the image key. The item's own image is never returned.
    """

    name = "coco-instances-miner"

    def __init__(self, image_categories: Mapping[str, Iterable[str]]):
        self.categories = {img: frozenset(c) for img, c in image_categories.items()}
        self.vocabulary = sorted({c for cats in self.categories.values() for c in cats})
        self._with: dict[str, list[str]] = {}
        for img in sorted(self.categories):
            for c in self.categories[img]:
                self._with.setdefault(c, []).append(img)

    @classmethod
    def from_instances(cls, path: str | os.PathLike) -> AnnotationDistractorMiner:
        return cls(load_coco_instances(path))

    def caption_objects(self, item: CaptionItem) -> frozenset[str]:
        return frozenset(item.objects) | {c for c in self.vocabulary if mentions(item.caption, c)}

    def distractors(self, item: CaptionItem, concept: str, k: int) -> list[str]:
        wanted = self.caption_objects(item) - {concept}

        def rank(img: str) -> tuple[int, int, str]:
            cats = self.categories[img]
            return -len(cats & wanted), len(cats - wanted - {concept}), img

        candidates = [img for img in self._with.get(concept, []) if img != item.image]
        return sorted(candidates, key=rank)[:k]
