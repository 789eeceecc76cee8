"""A tiny COCO and RefCOCOg, written by the tests in the real layouts (the files' own key sets: COCO captions and
instances with polygons, compressed and uncompressed RLE; RefCOCOg's refs(umd).p pickle with train / val / test
refs and its COCO-style instances.json; NegRefCOCOg's JSON list of {image, phrase, ref_bbox, bbox_list})."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from .test_seg_datasets import rle_to_string

H, W = 32, 40  # every image's height and width
CATEGORIES = {1: "person", 2: "bicycle", 3: "car", 6: "bus", 17: "cat", 18: "dog", 47: "cup", 48: "fork",
              62: "chair", 63: "couch", 67: "dining table"}
ID = {name: i for i, name in CATEGORIES.items()}

# image id -> ([(category, bbox [x, y, w, h], how the mask is stored)], captions); RefCOCOg refs point at these
SCENES: dict[int, tuple[list[tuple[str, list[int], str]], list[str]]] = {
    1: ([("person", [2, 4, 10, 24], "poly"), ("person", [26, 4, 10, 24], "poly"), ("bicycle", [14, 18, 10, 10], "poly")],
        ["A man riding a bike on the street.", "two people on a street"]),
    2: ([("dog", [2, 12, 12, 12], "rle"), ("dog", [24, 12, 12, 12], "poly"), ("chair", [15, 2, 8, 10], "poly")],
        ["Two dogs sitting near a chair.", "a dog and a dog by a chair"]),
    3: ([("cup", [4, 4, 8, 8], "poly"), ("cup", [28, 20, 8, 8], "poly"), ("dining table", [0, 16, 40, 16], "poly")],
        ["A cup on a table.", "two cups on a table"]),
    4: ([("car", [1, 10, 10, 8], "poly"), ("car", [14, 10, 10, 8], "poly"), ("car", [27, 10, 10, 8], "poly"),
         ("car", [0, 20, 40, 10], "crowd"), ("bus", [5, 0, 30, 9], "poly")],
        ["cars and a bus on the road"]),
    5: ([("cat", [10, 8, 12, 12], "poly"), ("couch", [0, 14, 40, 18], "poly")],
        ["A cat sitting on a couch.", "a cat on a couch with no dog"]),
    6: ([("person", [4, 2, 10, 26], "poly"), ("dog", [20, 16, 12, 12], "poly")],
        ["A man with a dog on the street."]),
    7: ([("person", [2, 2, 10, 26], "poly"), ("bicycle", [6, 16, 12, 12], "poly"), ("car", [24, 12, 14, 10], "poly")],
        ["A woman riding a bike next to a car."]),
    8: ([("cup", [4, 4, 8, 8], "poly"), ("fork", [20, 6, 3, 12], "poly"), ("dining table", [0, 14, 40, 18], "poly")],
        ["A fork and a cup on a table."]),
    9: ([("dog", [2, 10, 14, 14], "poly"), ("cat", [22, 10, 14, 14], "poly")], ["a dog and a cat"]),
    10: ([("chair", [2, 6, 10, 20], "poly"), ("dining table", [14, 14, 24, 16], "poly"), ("cup", [20, 6, 6, 8], "poly")],
         ["A table with a chair and a cup."]),
    11: ([("bus", [2, 2, 30, 20], "poly"), ("person", [32, 10, 6, 20], "poly")], ["a bus on the street with a man"]),
    12: ([("person", [2, 4, 10, 24], "poly"), ("person", [26, 4, 10, 24], "poly")], ["two people standing"]),
    13: ([("cup", [4, 4, 8, 8], "poly"), ("cup", [28, 4, 8, 8], "poly")], ["two cups"]),
    14: ([], ["the sky"]),
}

# RefCOCOg refs: (ref_id, image id, index of the object in SCENES, split, sentences)
REFS = [
    (100, 1, 0, "train", ["the man on the left", "a man in black"]),
    (101, 1, 1, "train", ["the man on the right", "the man not wearing a hat"]),
    (102, 2, 0, "train", ["a brown dog"]),
    (103, 2, 1, "train", ["the white dog by the chair"]),
    (104, 3, 0, "train", ["a red cup"]),
    (105, 3, 1, "train", ["the blue cup on the table"]),
    (106, 4, 1, "train", ["the car in the middle"]),
    (107, 6, 0, "train", ["a man with a dog"]),
    (108, 9, 0, "train", ["a dog"]),
    (109, 9, 1, "train", ["a cat that is not black"]),
    (200, 12, 0, "val", ["the man on the left"]),
    (201, 12, 1, "val", ["the man that is not on the left"]),
    (300, 13, 0, "test", ["a cup on the left"]),
    (301, 13, 1, "test", ["the cup which is not on the left"]),
]


def file_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def _box_mask(bbox: list[int]) -> np.ndarray:
    x, y, w, h = bbox
    m = np.zeros((H, W), bool)
    m[y: y + h, x: x + w] = True
    return m


def _runs(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with zeros (COCO RLE counts)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, current, n = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(n)
            current, n = v, 0
        n += 1
    counts.append(n)
    return counts


def segmentation(bbox: list[int], how: str):
    x, y, w, h = bbox
    if how == "poly":  # PIL fills a polygon's boundary pixels: the last row and column are x + w - 1, y + h - 1
        return [[x, y, x + w - 1, y, x + w - 1, y + h - 1, x, y + h - 1]]
    counts = _runs(_box_mask(bbox))
    return {"size": [H, W], "counts": counts if how == "crowd" else rle_to_string(counts)}


def instances() -> dict:
    images, anns = [], []
    for image_id, (objects, _) in SCENES.items():
        images.append({"license": 1, "file_name": file_name(image_id), "coco_url": "", "height": H, "width": W,
                       "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": image_id})
        for j, (cat, bbox, how) in enumerate(objects):
            anns.append({"segmentation": segmentation(bbox, how), "area": float(bbox[2] * bbox[3]),
                         "iscrowd": int(how == "crowd"), "image_id": image_id, "bbox": [float(v) for v in bbox],
                         "category_id": ID[cat], "id": ann_id(image_id, j)})
    return {"info": {"description": "tiny COCO"}, "licenses": [{"id": 1, "name": "x", "url": ""}], "images": images,
            "annotations": anns, "categories": [{"supercategory": "thing", "id": i, "name": n}
                                                for i, n in CATEGORIES.items()]}


def ann_id(image_id: int, index: int) -> int:
    return 1000 * image_id + index


def expected_mask(image_id: int, index: int) -> np.ndarray:
    return _box_mask(SCENES[image_id][0][index][1])


def write_coco_world(root: Path) -> dict:
    """COCO train2014 images, captions_train2014.json, instances_train2014.json; RefCOCOg refs(umd).p and its
    instances.json; NegRefCOCOg.json naming image 3 (a train image) and the val images."""
    root = Path(root)
    images = root / "train2014"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    caps = []
    for image_id, (_, captions) in SCENES.items():
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(images / file_name(image_id), quality=95)
        caps += [{"image_id": image_id, "id": 10 * image_id + k, "caption": c} for k, c in enumerate(captions)]
    inst = instances()
    captions_file = root / "annotations" / "captions_train2014.json"
    captions_file.parent.mkdir(parents=True, exist_ok=True)
    captions_file.write_text(json.dumps({"info": inst["info"], "licenses": inst["licenses"], "images": inst["images"],
                                         "annotations": caps}))
    instances_file = root / "annotations" / "instances_train2014.json"
    instances_file.write_text(json.dumps(inst))
    refcocog = root / "refcocog"
    refcocog.mkdir(exist_ok=True)
    (refcocog / "instances.json").write_text(json.dumps(inst))
    refs, sent_id = [], 0
    for ref_id, image_id, index, split, sentences in REFS:
        sents = []
        for s in sentences:
            sents.append({"tokens": s.split(), "raw": s.capitalize() + ".", "sent_id": sent_id, "sent": s})
            sent_id += 1
        refs.append({"sent_ids": [x["sent_id"] for x in sents], "file_name": file_name(image_id)[:-4] + f"_{ref_id}.jpg",
                     "ann_id": ann_id(image_id, index), "ref_id": ref_id, "image_id": image_id, "split": split,
                     "sentences": sents, "category_id": ID[SCENES[image_id][0][index][0]]})
    with (refcocog / "refs(umd).p").open("wb") as fh:
        pickle.dump(refs, fh)
    neg = []
    for image_id in (3, 12):
        boxes = [o[1] for o in SCENES[image_id][0] if o[0] == SCENES[image_id][0][0][0]]
        neg.append({"image": file_name(image_id), "phrase": "the one that is not on the left",
                    "ref_bbox": [float(v) for v in boxes[1]], "bbox_list": [[float(v) for v in b] for b in boxes]})
    (root / "NegRefCOCOg.json").write_text(json.dumps(neg))
    return {"root": root, "images": images, "captions": captions_file, "instances": instances_file,
            "refs": refcocog / "refs(umd).p", "ref_instances": refcocog / "instances.json",
            "negrefcocog": root / "NegRefCOCOg.json"}
