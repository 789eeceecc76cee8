"""Referring-segmentation datasets in their real formats: RefCOCOg (umd), PhraseCut, plain JSONL.

Every loader reads and checks the whole annotation up front (fields, types, segmentation structure,
image files present) and raises `InputError` naming the file and the entry on the first bad one, so a
run never fails after hours of compute. Masks are decoded lazily, one sample at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.data.refcocog import load_builtin_pickle, read_json, refs_of_split
from negation_encoder.errors import InputError
from negation_encoder.splitting import NEGATION_CUES, cue_matcher

from .masks import (
    MaskFormatError,
    check_coco_segmentation,
    coco_segmentation_to_mask,
    load_png_mask,
    phrasecut_polygons_to_mask,
)

DATASETS = ("refcocog", "phrasecut", "jsonl")


@dataclass(frozen=True)
class SegSample:
    """One referring expression: an image, a phrase and a way to get its ground-truth mask."""

    id: str
    image: Path
    text: str
    load_mask: Callable[[], np.ndarray] = field(repr=False, compare=False)
    class_id: int | None = None


@dataclass
class SegDataset:
    name: str
    samples: list[SegSample]
    counts: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class DatasetConfig(Validated):
    """Where a dataset lives and which part of it to use (the CLI's --dataset options)."""

    kind: str = option(help="annotation format of the data", choices=DATASETS, flag="--dataset")
    refs: str | None = option(None, "RefCOCOg: the refs(umd).p pickle")
    instances: str | None = option(None, "RefCOCOg: COCO-style instances.json with the masks")
    refer: str | None = option(None, "PhraseCut: refer_<split>.json")
    image_data: str | None = option(None, "PhraseCut: image_data_<split>.json (image sizes)")
    jsonl: str | None = option(None, "jsonl: a file of {image, text, mask} lines (mask: PNG, nonzero = foreground)")
    images: str | None = option(None, "image root (RefCOCOg: COCO train2014; PhraseCut: its images folder; jsonl: "
                                "defaults to the file's folder)")
    split: str = option("test", "RefCOCOg: split of refs(umd).p to use")
    negation_only: bool = option(False, "keep only phrases with a negation cue")
    cues: tuple[str, ...] = option(NEGATION_CUES, "comma-separated negation cues for --negation-only (default: the "
                                   "project's lexicon, negation_encoder.splitting.NEGATION_CUES)")
    limit: int | None = option(None, "evaluate only the first N samples (after filtering)")

    def problems(self) -> list[str]:
        p = collect(at_least(self, "limit", 1, allow_none=True))
        self.cues = tuple(c.strip() for c in self.cues if c and c.strip())
        if not self.cues:
            p.append("cues: expected at least one negation cue, got none")
        if self.cues != NEGATION_CUES and not self.negation_only:
            p.append("cues is only used with negation_only")
        return p


# ---------------------------------------------------------------------------------------------------
# small helpers


def _need(path: str | None, flag: str, what: str) -> Path:
    if not path:
        raise InputError(f"{flag}: required for this dataset ({what})")
    return Path(path)


def _check_images(samples: Sequence[SegSample], source: Path) -> None:
    for s in samples:
        if not s.image.is_file():
            raise InputError(f"{source}: entry {s.id}: image {s.image} not found")


def _finish(name: str, samples: list[SegSample], counts: dict, cfg: DatasetConfig, source: Path) -> SegDataset:
    counts["samples_before_filter"] = len(samples)
    if cfg.negation_only:
        has_cue = cue_matcher(cfg.cues)
        samples = [s for s in samples if has_cue(s.text)]
    counts["negation_only"] = cfg.negation_only
    counts["samples_after_filter"] = len(samples)
    if cfg.limit is not None:
        samples = samples[: cfg.limit]
    counts["samples"] = len(samples)
    _check_images(samples, source)
    return SegDataset(name, samples, counts)


def _mask_loader(fn, source: Path, entry: str, *args) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            return fn(*args)
        except MaskFormatError as e:
            raise InputError(f"{source}: entry {entry}: {e}") from None
        except OSError as e:
            raise InputError(f"{source}: entry {entry}: cannot read mask ({e})") from None
    return load


# ---------------------------------------------------------------------------------------------------
# RefCOCOg (refer API files)


def load_refcocog(cfg: DatasetConfig) -> SegDataset:
    """`refs(umd).p` + COCO `instances.json`: one sample per sentence of every ref in `cfg.split`."""
    refs_path = _need(cfg.refs, "--refs", "RefCOCOg refs(umd).p")
    inst_path = _need(cfg.instances, "--instances", "RefCOCOg instances.json")
    root = _need(cfg.images, "--images", "the COCO train2014 image folder")
    refs = load_builtin_pickle(refs_path)
    if not isinstance(refs, list):
        raise InputError(f"{refs_path}: expected a list of refs, got {type(refs).__name__}")
    inst = read_json(inst_path, "COCO instances.json")
    if not isinstance(inst, dict) or not isinstance(inst.get("images"), list) or \
            not isinstance(inst.get("annotations"), list):
        raise InputError(f"{inst_path}: expected an object with 'images' and 'annotations' lists")
    images, anns = {}, {}
    for i, im in enumerate(inst["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "height", "width")):
            raise InputError(f"{inst_path}: images[{i}]: expected id, file_name, height, width")
        images[im["id"]] = im
    for i, a in enumerate(inst["annotations"]):
        if not isinstance(a, dict) or not all(k in a for k in ("id", "image_id", "segmentation")):
            raise InputError(f"{inst_path}: annotations[{i}]: expected id, image_id, segmentation")
        anns[a["id"]] = a
    samples: list[SegSample] = []
    n_refs = 0
    for ref, ann, im in refs_of_split(refs, cfg.split, anns, images, refs_path, inst_path):
        h, w = int(im["height"]), int(im["width"])
        try:
            check_coco_segmentation(ann["segmentation"], h, w)
        except MaskFormatError as e:
            raise InputError(f"{inst_path}: annotation {ann['id']}: {e}") from None
        n_refs += 1
        for j, sent in enumerate(ref["sentences"]):
            if not isinstance(sent, dict) or not isinstance(sent.get("sent"), str):
                raise InputError(f"{refs_path}: ref {ref['ref_id']}: sentences[{j}] has no 'sent' string")
            sid = f"{ref['ref_id']}:{sent.get('sent_id', j)}"
            samples.append(SegSample(
                id=sid, image=root / im["file_name"], text=sent["sent"],
                load_mask=_mask_loader(coco_segmentation_to_mask, inst_path, f"annotation {ann['id']}",
                                       ann["segmentation"], h, w),
                class_id=ref.get("category_id")))
    if n_refs == 0:
        splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
        raise InputError(f"{refs_path}: no refs in split {cfg.split!r} (splits present: {', '.join(splits)})")
    return _finish("refcocog", samples, {"refs": n_refs, "split": cfg.split}, cfg, refs_path)


# ---------------------------------------------------------------------------------------------------
# PhraseCut (refer_<split>.json + image_data_<split>.json)


def load_phrasecut(cfg: DatasetConfig) -> SegDataset:
    """PhraseCut tasks `{task_id, image_id, phrase, Polygons}`; image sizes from image_data; images
    at `<images>/<image_id>.jpg` (PhraseCut's layout)."""
    refer_path = _need(cfg.refer, "--refer", "PhraseCut refer_<split>.json")
    data_path = _need(cfg.image_data, "--image-data", "PhraseCut image_data_<split>.json")
    root = _need(cfg.images, "--images", "the PhraseCut (Visual Genome) image folder")
    tasks = read_json(refer_path, "a PhraseCut refer_<split>.json list of tasks")
    if not isinstance(tasks, list):
        raise InputError(f"{refer_path}: expected a list of tasks, got {type(tasks).__name__}")
    info = read_json(data_path, "a PhraseCut image_data_<split>.json list")
    if not isinstance(info, list):
        raise InputError(f"{data_path}: expected a list of images, got {type(info).__name__}")
    sizes = {}
    for i, im in enumerate(info):
        if not isinstance(im, dict) or not all(k in im for k in ("image_id", "width", "height")):
            raise InputError(f"{data_path}: entry {i}: expected image_id, width, height")
        sizes[im["image_id"]] = (int(im["height"]), int(im["width"]))
    samples = []
    for i, t in enumerate(tasks):
        if not isinstance(t, dict) or not all(k in t for k in ("task_id", "image_id", "phrase", "Polygons")):
            raise InputError(f"{refer_path}: task {i}: expected task_id, image_id, phrase, Polygons")
        if t["image_id"] not in sizes:
            raise InputError(f"{refer_path}: task {t['task_id']}: image_id {t['image_id']} is not in {data_path}")
        h, w = sizes[t["image_id"]]
        try:
            phrasecut_polygons_to_mask(t["Polygons"], 1, 1)  # structure check; a 1x1 canvas costs nothing
        except MaskFormatError as e:
            raise InputError(f"{refer_path}: task {t['task_id']}: {e}") from None
        samples.append(SegSample(
            id=str(t["task_id"]), image=root / f"{t['image_id']}.jpg", text=str(t["phrase"]),
            load_mask=_mask_loader(phrasecut_polygons_to_mask, refer_path, f"task {t['task_id']}", t["Polygons"], h, w)))
    return _finish("phrasecut", samples, {"tasks": len(tasks)}, cfg, refer_path)


# ---------------------------------------------------------------------------------------------------
# Plain JSONL for users' own data


def load_jsonl(cfg: DatasetConfig) -> SegDataset:
    """One `{"image", "text", "mask"}` object a line (optional `id`); paths relative to `--images`, or to
    the JSONL's folder when no image root is given. Mask: a PNG, nonzero = foreground."""
    path = _need(cfg.jsonl, "--jsonl", "a .jsonl of {image, text, mask}")
    root = Path(cfg.images) if cfg.images else path.parent
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a .jsonl of {{image, text, mask}})")
    samples, seen = [], set()
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            missing = [k for k in ("image", "text", "mask") if not isinstance(obj, dict) or not isinstance(obj.get(k), str)]
            if missing:
                raise InputError(f"{path}:{lineno}: expected string fields image, text, mask; missing {', '.join(missing)}")
            sid = str(obj.get("id", lineno))
            if sid in seen:
                raise InputError(f"{path}:{lineno}: duplicate id {sid!r}")
            seen.add(sid)
            mask = root / obj["mask"]
            if not mask.is_file():
                raise InputError(f"{path}:{lineno}: mask {mask} not found")
            samples.append(SegSample(id=sid, image=root / obj["image"], text=obj["text"],
                                     load_mask=_mask_loader(load_png_mask, path, f"line {lineno}", mask)))
    return _finish("jsonl", samples, {"lines": len(samples)}, cfg, path)


LOADERS: dict[str, Callable[[DatasetConfig], SegDataset]] = {
    "refcocog": load_refcocog, "phrasecut": load_phrasecut, "jsonl": load_jsonl}


def load_dataset(cfg: DatasetConfig) -> SegDataset:
    if cfg.kind not in LOADERS:
        raise InputError(f"--dataset: expected one of {', '.join(DATASETS)}, got {cfg.kind!r}")
    return LOADERS[cfg.kind](cfg)
