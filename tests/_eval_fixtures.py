"""A small data root in the real file formats of the papers' benchmarks, written by the tests.

Paths inside the files are written the way the released files have them: absolute paths from the
authors' machines (VOC MCQ), checkout-relative paths (COCO MCQ and retrieval), bare file names
(VALSE, NegRefCOCOg) and `filepath/filename` (Karpathy), so every loader exercises suffix resolution.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.testing import tiny

AUTHOR_VOC = "/data/healthy-ml/scratch/kumail/projects/data/voc2007/VOCdevkit/VOC2007/JPEGImages"
AUTHOR_COCO = "data/coco/images/val2017"
MCQ_HEADER = ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
              "correct_answer_template"]
RETRIEVAL_HEADER = ["positive_objects", "negative_objects", "filepath", "image_id", "captions"]


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    return path


def write_model(folder: Path, seed: int = 0) -> Path:
    """A tiny CLIP encoder folder as `negenc train` writes it (config, weights, tokenizer/, processor)."""
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=seed, tokenizer=tok)
    return export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), folder,
                             training_config={"base": "openai/clip-vit-base-patch32", "steps": 1})


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


VALSE = {
    "existence_visual7w_1": {"dataset": "visual7w", "image_file": "v7w_1.jpg", "caption": "There are no dogs.",
                             "foil": "There are dogs.", "mturk": {"foil": 0, "caption": 3, "other": 0}},
    "existence_visual7w_2": {"dataset": "visual7w", "image_file": "v7w_2.jpg", "caption": "There is a car.",
                             "foil": "There is no car.", "mturk": {"foil": 1, "caption": 2, "other": 0}},
    "existence_visual7w_3": {"dataset": "visual7w", "image_file": "v7w_3.jpg", "caption": "There are no cats.",
                             "foil": "There are cats.", "mturk": {"foil": 0, "caption": 3, "other": 0}},
    "existence_visual7w_4": {"dataset": "visual7w", "image_file": "v7w_4.jpg", "caption": "There is a tree.",
                             "foil": "There is no tree.", "mturk": {"foil": 2, "caption": 1, "other": 0}},
    # caption == foil: strict ">" makes this item wrong whatever the model
    "existence_visual7w_5": {"dataset": "visual7w", "image_file": "v7w_5.jpg", "caption": "There is a bus.",
                             "foil": "There is a bus.", "mturk": {"foil": 0, "caption": 3, "other": 0}},
}

NEGREF = [
    {"image": "COCO_train2014_000000000011.jpg", "phrase": "a man without a hat",
     "ref_bbox": [0, 0, 20.5, 30], "bbox_list": [[0, 0, 20.5, 30], [20, 10, 44, 38]]},
    {"image": "COCO_train2014_000000000012.jpg", "phrase": "the dog with no cat",
     "ref_bbox": [30, 5, 34, 40.25], "bbox_list": [[1, 2, 25, 30], [30, 5, 34, 40.25]]},
    {"image": "COCO_train2014_000000000011.jpg", "phrase": "a red car",
     "ref_bbox": [20, 10, 44, 38], "bbox_list": [[0, 0, 20.5, 30], [20, 10, 44, 38]]},
]

COCO_MCQ = [
    [f"{AUTHOR_COCO}/000000000101.jpg", 0, "A dog is present in this image, but no car.",
     "A car is present in this image, but there is no dog.", "This image features a car.",
     "This image does not feature a dog.", "hybrid"],
    [f"{AUTHOR_COCO}/000000000101.jpg", 0, "No cat is present in this image.",
     "This image shows a cat, but no cup is present.", "A cat is present in this image.",
     "A cup is not included in this image.", "negative"],
    [f"{AUTHOR_COCO}/000000000102.jpg", 0, "A table and a chair are included in this image.",
     "A bus is present in this image, but a table is not.", "This image features a bus.",
     "A table is not present in this image.", "positive"],
    [f"{AUTHOR_COCO}/000000000103.jpg", 0, "This image contains a tree but no bird.",
     "This image shows a bird but lacks a tree.", "This image contains a bird.", "No tree is present in this image.",
     "hybrid"],
]

VOC_MCQ = [
    [f"{AUTHOR_VOC}/000201.jpg", 0, "This image does not include person", "This image includes person but not horse",
     "This image includes person", "This image does not include horse", "negative"],
    [f"{AUTHOR_VOC}/000202.jpg", 0, "This image includes bicycle but not person",
     "This image includes person but not bicycle", "This image includes person", "This image does not include bicycle",
     "hybrid"],
    [f"{AUTHOR_VOC}/000203.jpg", 0, "This image includes person and car", "This image includes chair but not person",
     "This image includes chair", "This image does not include person", "positive"],
]

COCO_IDS = (101, 102, 103, 104)
NEGATED_CAPTIONS = {
    101: ["A man in a kitchen, but there is no chair in sight.", "No fork is present, but a man is busy."],
    102: ["No cup can be seen; a table is set with a plate.", "In this white kitchen, no bottle is in sight."],
    103: ["A person with a cart on a street, with no car.", "People walk by; there is no dining table."],
    104: ["A dog on the grass without a cat.", "No bus is on the road."],
}
PLAIN_CAPTIONS = {
    101: ["A man is in a kitchen making pizzas.", "A baker is working in the kitchen."],
    102: ["The dining table has a bowl of fruit on it.", "A small kitchen has a table."],
    103: ["a person with a shopping cart on a city street", "People walking on the street."],
    104: ["A dog is lying on the grass.", "A red bus on the road."],
}

KARPATHY_TEST = {301: ["a black cat on a red car", "a cat sitting on a car"],
                 302: ["two dogs under a tree", "dogs near a green tree"],
                 303: ["a white plate on a table", "a table with a plate and a cup"]}
CLASSES = (("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"))


def retrieval_rows(captions: dict[int, list[str]]) -> list[list]:
    return [["['person', 'cup']", "['chair', 'car']", f"{AUTHOR_COCO}/{i:012d}.jpg", str(i), repr(caps)]
            for i, caps in captions.items()]


def write_data_root(root: Path) -> Path:
    """Every benchmark's files and images in the default layout under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_image(root / "valse" / "images" / f"v7w_{i}.jpg", seed=i)
    (root / "valse").mkdir(exist_ok=True)
    (root / "valse" / "existence.json").write_text(json.dumps(VALSE, indent=4))
    for n in (11, 12):
        write_image(root / "coco" / "train2014" / f"COCO_train2014_{n:012d}.jpg", seed=100 + n, size=(64, 48))
    (root / "negrefcocog").mkdir(exist_ok=True)
    (root / "negrefcocog" / "NegRefCOCOg.json").write_text(json.dumps(NEGREF))
    for i in COCO_IDS:
        write_image(root / "coco" / "val2017" / f"{i:012d}.jpg", seed=200 + i)
    for n in (201, 202, 203):
        write_image(root / "voc2007" / "JPEGImages" / f"{n:06d}.jpg", seed=300 + n)
    _csv(root / "negbench" / "COCO_val_mcq_llama3.1_rephrased.csv", MCQ_HEADER, COCO_MCQ)
    _csv(root / "negbench" / "VOC2007_mcq.csv", MCQ_HEADER, VOC_MCQ)
    _csv(root / "negbench" / "COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv", RETRIEVAL_HEADER,
         retrieval_rows(NEGATED_CAPTIONS))
    _csv(root / "negbench" / "COCO_val_retrieval.csv", RETRIEVAL_HEADER, retrieval_rows(PLAIN_CAPTIONS))
    images = []
    for cocoid, caps in KARPATHY_TEST.items():
        write_image(root / "coco" / "val2014" / f"COCO_val2014_{cocoid:012d}.jpg", seed=cocoid)
        images.append({"filepath": "val2014", "filename": f"COCO_val2014_{cocoid:012d}.jpg", "imgid": cocoid,
                       "split": "test", "cocoid": cocoid,
                       "sentences": [{"tokens": c.split(), "raw": c, "imgid": cocoid, "sentid": j}
                                     for j, c in enumerate(caps)]})
    # a train-split image whose file is absent: the loader must never look at it
    images.append({"filepath": "train2014", "filename": "COCO_train2014_000000000999.jpg", "imgid": 999,
                   "split": "train", "cocoid": 999, "sentences": [{"raw": "a dog", "tokens": ["a", "dog"]}]})
    (root / "coco" / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    for c, (wnid, _) in enumerate(CLASSES):
        for j in range(2):
            write_image(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{c * 2 + j:08d}.JPEG", seed=500 + 2 * c + j)
    (root / "imagenet" / "classnames.txt").write_text("\n".join(name for _, name in CLASSES) + "\n")
    return root
