"""Referring records with masks from RefCOCOg's train split, for the segmentation-aware term (`negenc generate
referring`).

Why: seg_loss teaches the text tower to say "the cup that is not red" in a frozen CLIPSeg's language, and it
needs referring expressions with masks, negated and affirmative, on objects that have a twin of their kind
in the image (the testbed's `make_referring_data` is this on the world). RefCOCOg (umd) gives exactly that:
images with several objects of one category, each referred object with its COCO mask and sentences.

Per train ref (`RefItem`):

- affirmative: one of its own sentences that negates nothing (`negated` false), with the other object of its
  category as `other_mask` when the image has exactly two (non-crowd) instances of it;
- negated, templated: when the image has exactly two instances, an expression that picks the referred one by
  excluding the other ("the cup that is not on the left", "the other man, not the man in a red shirt"), the
  other described by its position relative to the referent (from the boxes) or by its own shortest RefCOCOg
  sentence; `affirmative` is the referent's own sentence (seg_affirm's target). With more than two
  instances "not the one on the left" would name several objects, so no templated negation is made;
- negated, as written: a sentence of the ref that already negates ("the man not wearing a hat"), as
  NegRefCOCOg phrases them, with a cue-free sentence of the ref as its `affirmative`.

With an LLM the templated expressions are rewritten to sound natural (`rewrite_referring` prompt file) and
checked (the category named, a negation cue kept); a reject falls back to nothing (counted), never to
unchecked text.

Evaluation data never leaks in: a ref whose split is not "train" is never read past its split (counted by
split), and every ref whose ref id or image is named by an evaluation file (`load_exclusions`: NegRefCOCOg's
JSON, refs of another split, a JSONL set) is refused by id (counted).

Masks are rendered from the instances' polygons or RLE with `data.masks` (the decoder eval_seg reads ground
truth with), one PNG per annotation in `<out>.masks/`, written atomically before the records that name them.
Image paths are written relative to the output's folder, so `seg_loss.images` can stay empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..runio import atomic_save_image
from ..splitting import has_negation_cue
from .backends import RewriteRequest, TextLLM
from .categories import caption_word
from .masks import MaskFormatError, check_coco_segmentation, coco_segmentation_to_mask
from .pipelines import PipelineStats, run_items
from .referring import ReferringRecord, ReferringWriter
from .validation import check_caption, token_count

REFERRING_SOURCE = "refcocog"
TRAIN_SPLIT = "train"

# the other object, said by where it is relative to the referent ({side}: left, right, top, bottom)
POSITION_FORMS = ("the {kind} that is not on the {side}", "the {kind} which isn't on the {side}",
                  "not the {kind} on the {side}, the other one", "the other {kind}, not the one on the {side}")
# the other object, said by its own RefCOCOg sentence ({other})
SENTENCE_FORMS = ("not {other}, the other {kind}", "the other {kind}, not {other}")
MAX_OTHER_WORDS = 8  # a longer sentence of the other object makes an expression nobody would say
MIN_SEPARATION = 0.05  # centres closer than this share of the image's shorter side: no position to name


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    """refs(umd).p holds only dicts, lists, strings and numbers: refuse every class reference, so a
    tampered pickle cannot run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}: only builtin containers are allowed")


def load_builtin_pickle(path: str | os.PathLike):
    """A pickle of builtin containers only (RefCOCOg's refs(umd).p); any class reference is refused."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _BuiltinsOnlyUnpickler(fh).load()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found (expected the RefCOCOg refs pickle, e.g. refs(umd).p)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise InputError(f"{path}: not a readable refs pickle ({e})") from None


def read_json(path: Path, what: str):
    """A JSON file (a UTF-8 BOM accepted), or one InputError line naming the file and what it should hold."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found (expected {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid JSON ({e}) (expected {what})") from None


def load_refs(path: str | os.PathLike) -> list:
    """RefCOCOg refs: the refer API's `refs(umd).p` (builtins-only unpickling) or the same list as JSON."""
    path = Path(path)
    refs = read_json(path, "RefCOCOg refs as a JSON list") if path.suffix == ".json" else load_builtin_pickle(path)
    if not isinstance(refs, list):
        raise InputError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


# ---------------------------------------------------------------------------------------- exclusions

_IMAGE_ID_IN_NAME = re.compile(r"(\d+)\.(?:jpe?g|png)$", re.I)




def refs_of_split(refs: list, split: str | None, anns: dict, images: dict, refs_path, inst_path, counts=None):
    """(ref, its annotation, its image record) for each ref of `split` (None: every split), checked as read:
    one line naming the file and the ref or annotation on a missing key or a broken join. Refs of other
    splits are skipped before their annotation is read (counted in `counts` as `split:NAME`)."""
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict) or not all(k in ref for k in ("ref_id", "ann_id", "split", "sentences")):
            raise InputError(f"{refs_path}: ref {i}: expected ref_id, ann_id, split, sentences")
        if split is not None and ref["split"] != split:
            if counts is not None:
                counts[f"split:{ref['split']}"] += 1
            continue
        ann = anns.get(ref["ann_id"])
        if ann is None:
            raise InputError(f"{refs_path}: ref {ref['ref_id']}: ann_id {ref['ann_id']} is not in {inst_path}")
        im = images.get(ann["image_id"])
        if im is None:
            raise InputError(f"{inst_path}: annotation {ann['id']}: image_id {ann['image_id']} is not in 'images'")
        yield ref, ann, im


@dataclass
class Exclusions:
    """Refs and images an evaluation uses: a ref with one of these ref ids, or on one of these images (by COCO
    image id or file name), is never made into training data."""

    ref_ids: set[int] = field(default_factory=set)
    image_ids: set[int] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)

    def why(self, ref_id: int, image_id: int, file_name: str) -> str | None:
        if ref_id in self.ref_ids:
            return "excluded:evaluation_ref_id"
        if image_id in self.image_ids or Path(file_name).name in self.files:
            return "excluded:evaluation_image"
        return None


def _entries(path: Path) -> list:
    if path.suffix in (".p", ".pkl", ".pickle"):
        return load_builtin_pickle(path)
    if path.suffix == ".jsonl":
        out = []
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except FileNotFoundError:
            raise InputError(f"{path}: file not found (expected an evaluation file to exclude)") from None
        for i, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{i}: invalid JSON ({e.msg} at column {e.colno})") from None
        return out
    data = read_json(path, "an evaluation file to exclude (NegRefCOCOg.json, refs, a JSONL set)")
    if isinstance(data, dict):  # COCO-style {images: [...], annotations: [...]}, or {"refs": [...]}
        return [x for v in data.values() if isinstance(v, list) for x in v]
    return data if isinstance(data, list) else []


def load_exclusions(paths: Sequence[str | os.PathLike]) -> Exclusions:
    """Every ref id (`ref_id`), COCO image id (`image_id`, or the digits of an image file name) and image file
    name (`image`, `file_name`, `image_file`) the evaluation files name. A file that names none is an error:
    excluding nothing by mistake would let evaluation images into training."""
    ex = Exclusions()
    for p in paths:
        path = Path(p)
        before = (len(ex.ref_ids), len(ex.image_ids), len(ex.files))
        for entry in _entries(path):
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("ref_id"), int):
                ex.ref_ids.add(entry["ref_id"])
            if isinstance(entry.get("image_id"), int):
                ex.image_ids.add(entry["image_id"])
            for key in ("image", "file_name", "image_file"):
                name = entry.get(key)
                if isinstance(name, str) and name.strip():
                    ex.files.add(Path(name).name)
                    m = _IMAGE_ID_IN_NAME.search(name)
                    if m:
                        ex.image_ids.add(int(m.group(1)))
        if (len(ex.ref_ids), len(ex.image_ids), len(ex.files)) == before:
            raise InputError(f"--exclude {path}: names no ref_id, image_id or image file (expected NegRefCOCOg.json, "
                             "RefCOCOg refs or a JSONL set with such fields)")
        ex.sources.append(str(path))
    return ex


# ---------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Instance:
    ann_id: int
    segmentation: object = field(repr=False)
    bbox: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class RefItem:
    """One train ref: its object, image, sentences, and the other instance of its category when exactly two."""

    id: str
    ref_id: int
    image_id: int
    file_name: str
    height: int
    width: int
    kind: str
    target: Instance
    sentences: tuple[str, ...]
    other: Instance | None = None
    other_sentences: tuple[str, ...] = ()
    same_kind: int = 1  # non-crowd instances of its category in the image


def _box(value) -> tuple[float, float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None


def load_train_refs(refs_path: str | os.PathLike, instances_path: str | os.PathLike, images: str | os.PathLike,
                    exclusions: Exclusions | None = None, limit: int | None = None) -> tuple[list[RefItem], Counter]:
    """The train refs as `RefItem`s and the counts of refs left out (by split, by exclusion). Everything is
    checked before anything is rendered: fields, each used segmentation's structure, each image file present;
    the first problem is an `InputError` naming the file and the ref or annotation."""
    refs_path, inst_path, root = Path(refs_path), Path(instances_path), Path(images)
    exclusions = exclusions or Exclusions()
    refs = load_refs(refs_path)
    inst = read_json(inst_path, "COCO-style instances.json with images, annotations and categories")
    if not isinstance(inst, dict) or not all(isinstance(inst.get(k), list) for k in ("images", "annotations",
                                                                                     "categories")):
        raise InputError(f"{inst_path}: expected an object with 'images', 'annotations' and 'categories' lists")
    images_by_id: dict[int, dict] = {}
    for i, im in enumerate(inst["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "height", "width")):
            raise InputError(f"{inst_path}: images[{i}]: expected id, file_name, height, width")
        images_by_id[im["id"]] = im
    names: dict[int, str] = {}
    for i, c in enumerate(inst["categories"]):
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise InputError(f"{inst_path}: categories[{i}]: expected id and name")
        names[c["id"]] = c["name"]
    anns: dict[int, dict] = {}
    same: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(inst["annotations"]):
        if not isinstance(a, dict) or not all(k in a for k in ("id", "image_id", "category_id", "segmentation")):
            raise InputError(f"{inst_path}: annotations[{i}]: expected id, image_id, category_id, segmentation")
        anns[a["id"]] = a
        if not a.get("iscrowd", 0):
            same.setdefault((a["image_id"], a["category_id"]), []).append(a["id"])
    counts: Counter = Counter()
    sentences_of: dict[int, tuple[str, ...]] = {}  # ann id -> its train refs' sentences (to describe the other)
    kept: list[tuple[dict, dict, dict]] = []
    # evaluation refs are never read past their split
    for ref, ann, im in refs_of_split(refs, TRAIN_SPLIT, anns, images_by_id, refs_path, inst_path, counts):
        why = exclusions.why(ref["ref_id"], ann["image_id"], im["file_name"])
        if why:
            counts[why] += 1
            continue
        sents = []
        for j, sent in enumerate(ref["sentences"] if isinstance(ref["sentences"], list) else [None]):
            if not isinstance(sent, dict) or not isinstance(sent.get("sent"), str):
                raise InputError(f"{refs_path}: ref {ref['ref_id']}: sentences[{j}] has no 'sent' string")
            if sent["sent"].strip():
                sents.append(re.sub(r"\s+", " ", sent["sent"]).strip())
        sentences_of[ann["id"]] = sentences_of.get(ann["id"], ()) + tuple(sents)
        kept.append((ref, ann, im))
    if not kept and not counts:
        raise InputError(f"{refs_path}: no refs")
    if not kept:
        raise InputError(f"{refs_path}: no usable train refs (left out: "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    items = []
    for ref, ann, im in kept:
        if limit and len(items) >= limit:
            break
        h, w = int(im["height"]), int(im["width"])
        twins = same.get((ann["image_id"], ann["category_id"]), [ann["id"]])
        other = None
        if len(twins) == 2 and ann["id"] in twins:
            o = anns[twins[0] if twins[1] == ann["id"] else twins[1]]
            other = Instance(o["id"], o["segmentation"], _box(o.get("bbox")))
        for a in (ann, *([anns[other.ann_id]] if other else [])):
            try:
                check_coco_segmentation(a["segmentation"], h, w)
            except MaskFormatError as e:
                raise InputError(f"{inst_path}: annotation {a['id']}: {e}") from None
        if not (root / im["file_name"]).is_file():
            raise InputError(f"{inst_path}: image {im['file_name']!r} (image_id {im['id']}, ref {ref['ref_id']}) "
                             f"not found in {root}")
        items.append(RefItem(
            f"refcocog-{ref['ref_id']}", ref["ref_id"], ann["image_id"], im["file_name"], h, w,
            names.get(ann["category_id"], str(ref.get("category_id", "object"))),
            Instance(ann["id"], ann["segmentation"], _box(ann.get("bbox"))), sentences_of.get(ann["id"], ()),
            other, sentences_of.get(other.ann_id, ()) if other else (), len(twins)))
    return items, counts


# ---------------------------------------------------------------------------------------- records


def _seed(*parts: object) -> int:
    return int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def side_of(other: tuple[float, float, float, float], target: tuple[float, float, float, float],
            height: int, width: int) -> str | None:
    """Where `other` is relative to `target` (boxes [x, y, w, h]): left, right, top or bottom along the axis
    they differ most on; None when their centres are too close to say."""
    dx = (other[0] + other[2] / 2) - (target[0] + target[2] / 2)
    dy = (other[1] + other[3] / 2) - (target[1] + target[3] / 2)
    if max(abs(dx), abs(dy)) < MIN_SEPARATION * min(height, width):
        return None
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def _templated(item: RefItem, rng: np.random.Generator) -> tuple[str, str] | None:
    """(expression, the noun it names the referent by) picking the referent by excluding the other instance,
    or None when the other can be described neither by position nor by a short sentence of its own."""
    options = []
    side = side_of(item.other.bbox, item.target.bbox, item.height, item.width) \
        if item.other.bbox and item.target.bbox else None
    if side:
        options += [(form, {"side": side}) for form in POSITION_FORMS]
    described = sorted((s for s in item.other_sentences if not has_negation_cue(s)
                        and len(s.split()) <= MAX_OTHER_WORDS), key=lambda s: (len(s.split()), s))
    if described:
        options += [(form, {"other": described[0]}) for form in SENTENCE_FORMS]
    if not options:
        return None
    form, slots = options[int(rng.integers(len(options)))]
    # the referent's own noun where its sentences use one ("the man which isn't on the left", not "person")
    kind = next((w for w in (caption_word(s, item.kind) for s in item.sentences) if w != item.kind), item.kind)
    return form.format(kind=kind, **slots), kind


class MaskStore:
    """One PNG per annotation under `folder` (nonzero = the object), rendered once and written atomically."""

    def __init__(self, folder: Path, relative_to: Path):
        self.folder, self.base = folder, relative_to

    def key(self, item: RefItem, inst: Instance) -> str:
        path = self.folder / f"ann-{inst.ann_id}.png"
        if not path.exists():
            mask = coco_segmentation_to_mask(inst.segmentation, item.height, item.width)
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_save_image(path, Image.fromarray(mask.astype(np.uint8) * 255))
        return os.path.relpath(path, self.base)


@dataclass
class _Plan:
    """One ref's texts: a plain sentence (None: it has none), sentences that negate, a templated negation
    (text, the noun it names the referent by; None: none)."""

    item: RefItem
    plain: str | None
    negated: list[str]
    templated: tuple[str, str] | None


def _plan(item: RefItem, seed: int, stats: PipelineStats) -> _Plan | None:
    rng = np.random.default_rng(_seed(seed, item.ref_id))
    plain = [s for s in item.sentences if not has_negation_cue(s)]
    negated = [s for s in item.sentences if has_negation_cue(s)]
    if not plain and not negated:
        stats.rejects["select:no_sentences"] += 1
        return None
    templated = None
    if item.other is None:
        stats.rejects["templated:not_two_of_kind" if item.same_kind != 2 else "templated:crowd"] += 1
    elif not plain:  # a templated negation needs the referent said plainly (its `affirmative`)
        stats.rejects["templated:no_plain_sentence"] += 1
    else:
        templated = _templated(item, rng)
        if templated is None:
            stats.rejects["templated:no_way_to_describe_the_other"] += 1
    return _Plan(item, plain[int(rng.integers(len(plain)))] if plain else None, negated, templated)


def _rewrite(plans: list[_Plan], llm: TextLLM, tokenizer, stats: PipelineStats) -> None:
    jobs = [p for p in plans if p.templated is not None]
    outs = llm.rewrite([RewriteRequest(p.templated[0], p.templated[1], "referring", style=_seed(p.item.ref_id))
                        for p in jobs]) if jobs else []
    for p, text in zip(jobs, outs, strict=True):
        reason = check_caption(text, p.templated[0], p.templated[1], tokenizer, negated=True)  # names it, negates
        if reason:
            stats.rejects[f"rewrite:{reason}"] += 1
            p.templated = None
        else:
            stats.stages["rewrite_ok"] += 1
            p.templated = (text.strip(), p.templated[1])


def referring_records(batch: list[RefItem], masks: MaskStore, image_root: Path, relative_to: Path,
                      stats: PipelineStats, seed: int = 0, llm: TextLLM | None = None, tokenizer=None
                      ) -> list[ReferringRecord]:
    """The records of one batch of refs (masks written first, so no record names a missing file)."""
    plans = [p for p in (_plan(item, seed, stats) for item in batch) if p is not None]
    if llm is not None:
        _rewrite(plans, llm, tokenizer, stats)
    records = []
    for p in plans:
        item = p.item
        texts = [(f"refcocog:{item.ref_id}:aff", p.plain, False)] if p.plain else []
        if p.templated:
            texts.append((f"refcocog:{item.ref_id}:neg", p.templated[0], True))
        texts += [(f"refcocog:{item.ref_id}:sent{j}", s, True) for j, s in enumerate(p.negated)]
        image = os.path.relpath(image_root / item.file_name, relative_to)
        mask = masks.key(item, item.target)
        other = masks.key(item, item.other) if item.other is not None else None
        for rid, text, negated in texts:
            if token_count(text, tokenizer) > 77:
                stats.rejects["select:too_long"] += 1
                continue
            stats.stages["negated" if negated else "affirmative"] += 1
            records.append(ReferringRecord(rid, image, text, mask, other_mask=other, negated=negated,
                                           affirmative=p.plain if negated else None))
    return records


def mask_folder(out: str | os.PathLike) -> Path:
    """Where a referring file's masks go: `<out>.masks/` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".masks")


def run_referring(items: Sequence[RefItem], out: str | os.PathLike, images: str | os.PathLike, seed: int = 0,
                  batch_size: int = 32, llm: TextLLM | None = None, tokenizer=None, progress: bool = True,
                  counts: Counter | None = None) -> PipelineStats:
    """Append ReferringRecords for `items` to `out` (resumable: `pipelines.run_items`); masks in
    `mask_folder(out)`; `<out>.stats.json` with the refs left out before (`counts`) among its rejects."""
    out = Path(out)
    stats = PipelineStats(REFERRING_SOURCE)
    stats.rejects.update(counts or {})
    base = out.parent.resolve()
    store = MaskStore(mask_folder(out).resolve(), base)
    root = Path(images).resolve()
    return run_items(items, out, batch_size,
                     lambda batch: referring_records(batch, store, root, base, stats, seed, llm, tokenizer),
                     stats, progress=progress, writer=ReferringWriter)
