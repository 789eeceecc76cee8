"""Loaders for the benchmarks' files as released (formats: docs/design.md "Evaluation rules").

Each loader reads one file, resolves every image through `paths.resolve_image`, and checks every row
before any model is loaded, so a bad file costs seconds, not an hour of encoding. A bad row raises
`InputError` naming `FILE:LINE` (CSV) or `FILE: item KEY` (JSON) with what was expected and what
arrived; with `skip_missing` the row is counted instead (`missing_images`, `malformed_rows`). A file
that cannot be read at all raises `MissingInput`, which `--skip-missing` turns into a skipped benchmark.
"""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .paths import resolve_image
from .scoring import MCQ_TEMPLATES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MCQ_COLUMNS = ("image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
               "correct_answer_template")
RETRIEVAL_COLUMNS = ("filepath", "captions")
VALSE_MIN_VOTES = 2  # VALSE keeps items whose caption at least 2 of 3 annotators accepted (505 of 534)

T = TypeVar("T")


class MissingInput(InputError):
    """A benchmark file that is absent or unreadable as a whole (`--skip-missing` skips the benchmark)."""


@dataclass
class Loaded(Generic[T]):
    """Items of one file plus what was left out of it and why."""

    file: Path
    images: Path
    items: list[T] = field(default_factory=list)
    missing_images: int = 0
    malformed_rows: int = 0
    filtered: int = 0  # rows the benchmark's own rule drops (VALSE's mturk vote), not errors

    @property
    def skipped(self) -> int:
        return self.missing_images + self.malformed_rows


class _Checker:
    """Raises on the first bad row, or counts it when skipping."""

    def __init__(self, loaded: Loaded, skip_missing: bool):
        self.loaded = loaded
        self.skip_missing = skip_missing

    def malformed(self, where: str, message: str) -> None:
        if not self.skip_missing:
            raise InputError(f"{where}: {message}")
        self.loaded.malformed_rows += 1

    def image(self, where: str, recorded: Any) -> str | None:
        """The resolved path of a row's image, or None (after raising or counting) if there is none."""
        if not isinstance(recorded, str) or not recorded.strip():
            self.malformed(where, f"expected an image path, got {recorded!r}")
            return None
        path = resolve_image(recorded.strip(), self.loaded.images)
        problem = None if path is not None else f"image {recorded!r} not found under {self.loaded.images} " \
                                                "(tried its trailing path components)"
        if path is not None:
            try:
                with Image.open(path) as im:
                    im.verify()  # reads the header and checks the file without decoding the pixels
            except (UnidentifiedImageError, OSError) as e:
                problem = f"image {str(path)!r} is not a readable image ({type(e).__name__})"
        if problem is not None:
            if not self.skip_missing:
                raise InputError(f"{where}: {problem}")
            self.loaded.missing_images += 1
            return None
        return str(path)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise MissingInput(f"{path}: benchmark file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MissingInput(f"{path}: not valid JSON ({e})") from e


def _csv_rows(path: Path, columns: tuple[str, ...]):
    """(line number, row) for each data row, after checking the header has `columns`."""
    if not path.is_file():
        raise MissingInput(f"{path}: benchmark file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise MissingInput(f"{path}:1: expected columns {', '.join(columns)}; missing {', '.join(missing)} "
                               f"(header: {', '.join(header) or 'empty'})")
        for row in reader:
            yield reader.line_num, row


def _short_row(row: dict) -> str | None:
    """Why a csv row has the wrong number of fields, if it does."""
    if None in row:
        return f"{len(row) - 1 + len(row[None])} fields for {len(row) - 1} columns"
    if any(v is None for v in row.values()):
        return f"{sum(v is not None for v in row.values())} fields for {len(row)} columns"
    return None


# ---------------------------------------------------------------------------------------------- VALSE


@dataclass(frozen=True)
class ExistenceItem:
    id: str
    image: str
    caption: str
    foil: str


def load_valse_existence(path: Path, images: Path, skip_missing: bool = False) -> Loaded[ExistenceItem]:
    """VALSE `existence.json`: {key: {image_file, caption, foil, mturk{caption, ...}, ...}}; keeps
    items with mturk.caption >= 2, as VALSE's reported numbers do."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise MissingInput(f"{path}: expected a JSON object of items keyed by id, got {type(data).__name__}")
    out: Loaded[ExistenceItem] = Loaded(path, images)
    check = _Checker(out, skip_missing)
    for key, item in data.items():
        where = f"{path}: item {key!r}"
        votes = item.get("mturk", {}).get("caption") if isinstance(item, dict) and isinstance(item.get("mturk"), dict) \
            else None
        bad = [k for k in ("image_file", "caption", "foil") if not isinstance(item, dict)
               or not isinstance(item.get(k), str) or not item[k].strip()]
        if bad or not isinstance(votes, (int, float)):
            what = f"non-empty {', '.join(bad)}" if bad else "a number in mturk.caption"
            check.malformed(where, f"expected {what}; got {json.dumps(item)[:120]}")
            continue
        if votes < VALSE_MIN_VOTES:
            out.filtered += 1
            continue
        image = check.image(where, item["image_file"])
        if image is not None:
            out.items.append(ExistenceItem(str(key), image, item["caption"], item["foil"]))
    return out


# ----------------------------------------------------------------------------------------- NegRefCOCOg


@dataclass(frozen=True)
class ReferringItem:
    id: str
    image: str
    phrase: str
    boxes: tuple[tuple[float, float, float, float], ...]  # [x, y, w, h] each
    ref: int  # index of ref_bbox in boxes


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, (int, float)) for v in value):
        return None
    x, y, w, h = (float(v) for v in value)
    return (x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else None


def load_negrefcocog(path: Path, images: Path, skip_missing: bool = False) -> Loaded[ReferringItem]:
    """NegRefCOCOg.json as released: a list of {image, phrase, ref_bbox, bbox_list} on COCO train2014."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise MissingInput(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    out: Loaded[ReferringItem] = Loaded(path, images)
    check = _Checker(out, skip_missing)
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(item, dict) or not isinstance(item.get("phrase"), str) or not item["phrase"].strip():
            check.malformed(where, f"expected a non-empty 'phrase'; got {json.dumps(item)[:120]}")
            continue
        raw_boxes = item.get("bbox_list")
        boxes = [_box(b) for b in raw_boxes] if isinstance(raw_boxes, list) and raw_boxes else [None]
        ref = _box(item.get("ref_bbox"))
        if any(b is None for b in boxes) or ref is None:
            check.malformed(where, "expected ref_bbox and a non-empty bbox_list of [x, y, w, h] boxes with w, h > 0; "
                                   f"got ref_bbox={item.get('ref_bbox')!r}, bbox_list={raw_boxes!r}")
            continue
        if ref not in boxes:
            check.malformed(where, f"ref_bbox {item['ref_bbox']!r} is not one of bbox_list {raw_boxes!r}")
            continue
        image = check.image(where, item.get("image"))
        if image is not None:
            out.items.append(ReferringItem(str(i), image, item["phrase"], tuple(boxes), boxes.index(ref)))
    return out


# ------------------------------------------------------------------------------------------ NegBench MCQ


@dataclass(frozen=True)
class MCQItem:
    id: str
    image: str
    options: tuple[str, str, str, str]
    correct: int
    template: str


def load_negbench_mcq(path: Path, images: Path, skip_missing: bool = False) -> Loaded[MCQItem]:
    """A NegBench MCQ CSV (templated or LLM-rephrased; the columns are the same): `correct_answer` is
    the index (0-3) of the right caption, `correct_answer_template` its template."""
    out: Loaded[MCQItem] = Loaded(path, images)
    check = _Checker(out, skip_missing)
    for line, row in _csv_rows(path, MCQ_COLUMNS):
        where = f"{path}:{line}"
        short = _short_row(row)
        if short:
            check.malformed(where, f"expected {len(MCQ_COLUMNS)} columns, got {short}")
            continue
        answer = row["correct_answer"].strip()
        template = row["correct_answer_template"].strip()
        options = tuple(row[f"caption_{k}"].strip() for k in range(4))
        if answer not in ("0", "1", "2", "3"):
            check.malformed(where, f"expected correct_answer 0-3, got {row['correct_answer']!r}")
            continue
        if template not in MCQ_TEMPLATES:
            check.malformed(where, f"expected correct_answer_template in {'/'.join(MCQ_TEMPLATES)}, got {template!r}")
            continue
        if not all(options):
            check.malformed(where, f"expected four non-empty captions, got caption_{options.index('')} empty")
            continue
        image = check.image(where, row["image_path"])
        if image is not None:
            out.items.append(MCQItem(f"line{line}", image, options, int(answer), template))  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------------------- retrieval


@dataclass
class RetrievalSet:
    """Text-to-image retrieval: every caption is a query whose target is its own image in the gallery."""

    gallery: list[str] = field(default_factory=list)  # resolved image paths, unique
    queries: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)  # gallery index per query
    query_ids: list[str] = field(default_factory=list)

    def add(self, image: str, captions: list[str], row_id: str, index: dict[str, int]) -> None:
        if image not in index:
            index[image] = len(self.gallery)
            self.gallery.append(image)
        for j, c in enumerate(captions):
            self.queries.append(c)
            self.targets.append(index[image])
            self.query_ids.append(f"{row_id}:{j}")


def _caption_list(value: str) -> list[str] | None:
    """A `captions` cell: a Python list literal of strings (parsed with ast.literal_eval, never eval)."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(parsed, (list, tuple)) or not parsed or not all(isinstance(c, str) and c.strip() for c in parsed):
        return None
    return [c.strip() for c in parsed]


def load_retrieval_csv(path: Path, images: Path, skip_missing: bool = False) -> Loaded[RetrievalSet]:
    """NegBench's retrieval CSV shape (negated or plain COCO): `filepath` and `captions` (a list literal)."""
    out: Loaded[RetrievalSet] = Loaded(path, images, items=[RetrievalSet()])
    check = _Checker(out, skip_missing)
    index: dict[str, int] = {}
    for line, row in _csv_rows(path, RETRIEVAL_COLUMNS):
        where = f"{path}:{line}"
        short = _short_row(row)
        if short:
            check.malformed(where, f"expected {len(row) - (None in row)} columns, got {short}")
            continue
        captions = _caption_list(row["captions"])
        if captions is None:
            check.malformed(where, f"expected 'captions' as a list literal of non-empty strings, got {row['captions'][:80]!r}")
            continue
        image = check.image(where, row["filepath"])
        if image is not None:
            out.items[0].add(image, captions, f"line{line}", index)
    return out


def load_karpathy_coco(path: Path, images: Path, skip_missing: bool = False, split: str = "test") -> Loaded[RetrievalSet]:
    """Karpathy's `dataset_coco.json`: images[] with split, filepath, filename, sentences[].raw; the
    `split` images (5,000 for test) form the gallery and their sentences the queries."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise MissingInput(f"{path}: expected a JSON object with an 'images' list (Karpathy dataset_coco.json)")
    out: Loaded[RetrievalSet] = Loaded(path, images, items=[RetrievalSet()])
    check = _Checker(out, skip_missing)
    index: dict[str, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict) or img.get("split") != split:
            continue
        sents = img.get("sentences")
        captions = [s.get("raw", "").strip() if isinstance(s, dict) and isinstance(s.get("raw"), str) else ""
                    for s in sents] if isinstance(sents, list) else []
        if not isinstance(img.get("filename"), str) or not captions or not all(captions):
            check.malformed(where, f"expected filename and sentences[].raw, got keys {sorted(img)}")
            continue
        recorded = f"{img['filepath']}/{img['filename']}" if isinstance(img.get("filepath"), str) else img["filename"]
        image = check.image(where, recorded)
        if image is not None:
            out.items[0].add(image, captions, str(img.get("cocoid", img.get("imgid", i))), index)
    if not out.items[0].gallery and not out.skipped:
        raise MissingInput(f"{path}: no images with split {split!r}")
    return out


# -------------------------------------------------------------------------------------------- zero-shot


@dataclass
class ZeroshotSet:
    classnames: list[str]
    images: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def load_imagefolder(classnames_file: Path, images: Path, skip_missing: bool = False) -> Loaded[ZeroshotSet]:
    """An ImageNet-style folder: one sub-folder per class (sorted by folder name, as torchvision's
    ImageFolder orders them) and `classnames.txt` holding one readable name a line, in that order."""
    if not classnames_file.is_file():
        raise MissingInput(f"{classnames_file}: class-name list not found (one name per line, in folder order)")
    if not images.is_dir():
        raise MissingInput(f"{images}: image folder not found (expected one sub-folder per class)")
    names = [n.strip() for n in classnames_file.read_text(encoding="utf-8-sig").splitlines()]
    while names and not names[-1]:
        names.pop()
    folders = sorted(p for p in images.iterdir() if p.is_dir())
    if len(names) != len(folders) or not all(names):
        raise MissingInput(f"{classnames_file}: expected {len(folders)} non-empty class names (one per folder in "
                           f"{images}), got {len(names)} lines" + ("" if all(names) else f", line {names.index('') + 1} empty"))
    out: Loaded[ZeroshotSet] = Loaded(classnames_file, images, items=[ZeroshotSet(names)])
    check = _Checker(out, skip_missing)
    for label, folder in enumerate(folders):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                image = check.image(str(f), str(f.relative_to(images)))
                if image is not None:
                    out.items[0].images.append(image)
                    out.items[0].labels.append(label)
    if not out.items[0].images and not out.skipped:
        raise MissingInput(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return out
