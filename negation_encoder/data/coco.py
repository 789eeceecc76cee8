"""Loaders for COCO captions and VQAv2 (the NegationCLIP paper's sources), with one-line errors.

COCO captions: `captions_train2017.json` (or 2014) = {images: [{id, file_name}], annotations:
[{id, image_id, caption}]}. VQAv2: `v2_OpenEnded_mscoco_*_questions.json` = {questions: [{question_id,
image_id, question}]} and `v2_mscoco_*_annotations.json` = {annotations: [{question_id, image_id,
answer_type, multiple_choice_answer, answers}]}; "no" means the majority answer
(`multiple_choice_answer`) is "no" on a yes/no question.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from .pipelines import CaptionItem, QAItem


def _load_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected {what})")
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} (expected {what})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object ({what}), got {type(obj).__name__}")
    return obj


def _require(path, entry: str, obj: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise InputError(f"{path}: {entry} is missing {', '.join(repr(m) for m in missing)}")


def load_coco_images(path: str | os.PathLike) -> tuple[dict[int, str], dict[int, list[tuple[int, str]]]]:
    """({image_id: file_name}, {image_id: [(annotation_id, caption), ...]}) from a COCO captions file."""
    obj = _load_json(path, "COCO captions with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(obj.get(key), list):
            raise InputError(f"{path}: top-level key {key!r} must be a list (COCO captions format)")
    files: dict[int, str] = {}
    for i, img in enumerate(obj["images"]):
        _require(path, f"images[{i}]", img, ("id", "file_name"))
        files[img["id"]] = img["file_name"]
    caps: dict[int, list[tuple[int, str]]] = {}
    for i, ann in enumerate(obj["annotations"]):
        _require(path, f"annotations[{i}]", ann, ("id", "image_id", "caption"))
        if ann["image_id"] not in files:
            raise InputError(f"{path}: annotations[{i}] (id {ann['id']}) refers to image_id {ann['image_id']}, "
                             "which is not in 'images'")
        caps.setdefault(ann["image_id"], []).append((ann["id"], str(ann["caption"]).strip()))
    return files, caps


def load_coco_captions(path: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                       check_images: bool = True, limit: int | None = None) -> list[CaptionItem]:
    """One CaptionItem per caption annotation (ids `coco-<annotation id>`), in file order."""
    files, caps = load_coco_images(path)
    items = []
    for image_id, pairs in caps.items():
        if check_images and image_dir is not None and not (Path(image_dir) / files[image_id]).is_file():
            raise InputError(f"{path}: image {files[image_id]!r} (image_id {image_id}) not found in {image_dir}")
        for ann_id, caption in pairs:
            items.append(CaptionItem(f"coco-{ann_id}", files[image_id], caption))
            if limit and len(items) >= limit:
                return items
    return items


def classify_question(question: str) -> str:
    """Which negation a "no" answer expresses: absence ("is there a dog?"), action ("is he running?")
    or attribute (everything else: colours, states, relations)."""
    q = question.lower().strip()
    if q.startswith(("is there", "are there", "can you see", "do you see")):
        return "absence"
    words = [w.strip("?.,!") for w in q.split()]
    if any(w.endswith("ing") and len(w) > 4 for w in words[1:]):
        return "action"
    return "attribute"


def load_vqa_no_items(questions: str | os.PathLike, annotations: str | os.PathLike,
                      captions: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                      check_images: bool = True, limit: int | None = None) -> list[QAItem]:
    """VQAv2 yes/no questions whose majority answer is "no", each with its image's first COCO caption."""
    files, caps = load_coco_images(captions)
    qobj = _load_json(questions, "VQAv2 questions with key 'questions'")
    aobj = _load_json(annotations, "VQAv2 annotations with key 'annotations'")
    if not isinstance(qobj.get("questions"), list):
        raise InputError(f"{questions}: top-level key 'questions' must be a list (VQAv2 questions format)")
    if not isinstance(aobj.get("annotations"), list):
        raise InputError(f"{annotations}: top-level key 'annotations' must be a list (VQAv2 annotations format)")
    qtext: dict[int, str] = {}
    for i, q in enumerate(qobj["questions"]):
        _require(questions, f"questions[{i}]", q, ("question_id", "image_id", "question"))
        qtext[q["question_id"]] = q["question"]
    items = []
    for i, a in enumerate(aobj["annotations"]):
        _require(annotations, f"annotations[{i}]", a, ("question_id", "image_id", "multiple_choice_answer"))
        if a.get("answer_type", "yes/no") != "yes/no" or str(a["multiple_choice_answer"]).strip().lower() != "no":
            continue
        if a["question_id"] not in qtext:
            raise InputError(f"{annotations}: annotations[{i}] question_id {a['question_id']} has no question in {questions}")
        image_id = a["image_id"]
        if image_id not in files or image_id not in caps:
            raise InputError(f"{annotations}: annotations[{i}] image_id {image_id} has no caption in {captions}")
        if check_images and image_dir is not None and not (Path(image_dir) / files[image_id]).is_file():
            raise InputError(f"{annotations}: image {files[image_id]!r} (image_id {image_id}) not found in {image_dir}")
        question = qtext[a["question_id"]]
        items.append(QAItem(f"vqa-{a['question_id']}", files[image_id], caps[image_id][0][1], question, "no",
                            classify_question(question)))
        if limit and len(items) >= limit:
            break
    return items
