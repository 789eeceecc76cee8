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

import heapq
import os
from collections.abc import Iterable, Mapping

from ..errors import InputError
from .categories import ALIASES, names_category
from .coco import _load_json, _require
from .pipelines import CaptionItem, PipelineStats, run_items
from .records import NegationRecord


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
        """The item's known objects and the categories its caption names ("a man" names "person")."""
        return frozenset(item.objects) | {c for c in self.vocabulary if names_category(item.caption, c)}

    def distractors(self, item: CaptionItem, concept: str, k: int) -> list[str]:
        wanted = self.caption_objects(item) - {concept}

        def rank(img: str) -> tuple[int, int, str]:
            cats = self.categories[img]
            return -len(cats & wanted), len(cats - wanted - {concept}), img

        candidates = (img for img in self._with.get(concept, []) if img != item.image)
        return heapq.nsmallest(k, candidates, key=rank)  # = sorted(...)[:k], without sorting 60,000 "person" images


def concept_category(concept: str, vocabulary: Iterable[str]) -> str | None:
    """The category a record's negated concept is: its name ("fork", "forks", "a fork") or a word captions
    use for it ("man" -> "person", "sofa" -> "couch"); None for anything else. A head word alone is not
    enough: "no light" is not "no traffic light"."""
    words = concept.lower().strip().split()
    while words and words[0] in ("a", "an", "the", "any", "some"):
        words = words[1:]
    text = " ".join(words)
    vocabulary = list(vocabulary)
    for c in vocabulary:
        if text in (c, c + "s", c + "es"):
            return c
    for c in vocabulary:
        if any(text in (a, a + "s", a + "es") for a in ALIASES.get(c, ())):
            return c
    return None


def counterfactual_records(batch: list[NegationRecord], miner: AnnotationDistractorMiner, k: int,
                           stats: PipelineStats, replace: bool = False, vocabulary: Iterable[str] = ()
                           ) -> list[NegationRecord]:
    """The batch with `distractor_images` on every absence record whose negated concept is a category (of
    `vocabulary`, default the miner's): the images that contain it and share the most of the caption's other
    objects (the miner's ranking). Other records pass through unchanged; so do records that already have
    distractor images, unless `replace`, which mines them afresh (and leaves none where none is found)."""
    vocabulary = sorted(set(vocabulary) | set(miner.vocabulary))
    out = []
    for rec in batch:
        if rec.negation_type != "absence":
            stats.stages[f"passed:{rec.negation_type}"] += 1
            out.append(rec)
            continue
        if rec.distractor_images and not replace:
            stats.stages["kept_existing"] += 1
            out.append(rec)
            continue
        category = concept_category(rec.negated_concept, vocabulary)
        found = miner.distractors(CaptionItem(rec.id, rec.image, rec.caption), category, k) if category else []
        if category is None:
            stats.rejects["concept_not_a_category"] += 1
        elif not found:
            stats.rejects["no_image_with_the_concept"] += 1
        obj = rec.to_dict()
        obj.pop("distractor_images", None)
        if found:
            obj["distractor_images"] = found
            obj["provenance"] = {**rec.provenance, "distractor_source": miner.name, "distractor_category": category}
            stats.stages["records_with_distractors"] += 1
            stats.stages["distractor_images"] += len(found)
        elif rec.distractor_images:
            stats.stages["cleared"] += 1
        out.append(NegationRecord.from_dict(obj))
    return out


def run_counterfactuals(records: list[NegationRecord], out: str | os.PathLike, miner: AnnotationDistractorMiner,
                        k: int = 2, replace: bool = False, batch_size: int = 256, progress: bool = True,
                        vocabulary: Iterable[str] = ()) -> PipelineStats:
    """Write `records` to `out` with counterfactual distractor images added (`counterfactual_records`):
    appended and resumable as every generator (`pipelines.run_items`), `<out>.stats.json` at the end."""
    stats = PipelineStats("counterfactuals")
    return run_items(records, out, batch_size,
                     lambda b: counterfactual_records(b, miner, k, stats, replace, vocabulary), stats,
                     progress=progress)
