"""eval_seg loaders on small fixtures written here in the real formats (refs pickle + instances.json,
PhraseCut refer/image_data JSON, JSONL + PNG), and the mask decoders against hand-drawn masks."""

from __future__ import annotations

import datetime
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from eval_seg import (
    DatasetConfig,
    coco_polygons_to_mask,
    decode_rle,
    load_dataset,
    phrasecut_polygons_to_mask,
    rle_counts_from_string,
)
from negation_encoder.errors import InputError
from negation_encoder.splitting import cue_matcher

# a 4 x 5 mask drawn by hand; column-major runs: 0x4 1x2 0x2 1x3 0x3 1x1 0x5
HAND = np.array([[0, 1, 1, 0, 0],
                 [0, 1, 1, 0, 0],
                 [0, 0, 1, 1, 0],
                 [0, 0, 0, 0, 0]], dtype=bool)
HAND_COUNTS = [4, 2, 2, 3, 3, 1, 5]


def rle_to_string(counts: list[int]) -> str:
    """pycocotools' rleToString, written from its description: deltas to the count two back after the
    second, 5-bit groups low first, 0x20 = more, sign from 0x10 of the last group, chars offset by 48."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def test_rle_counts_list_decodes_to_hand_mask():
    assert np.array_equal(decode_rle({"size": [4, 5], "counts": HAND_COUNTS}), HAND)


def test_rle_compressed_string_roundtrip_including_long_and_falling_runs():
    s = rle_to_string(HAND_COUNTS)
    assert rle_counts_from_string(s) == HAND_COUNTS
    assert np.array_equal(decode_rle({"size": [4, 5], "counts": s}), HAND)
    big = [700, 35, 1, 900, 2, 3000, 64, 1, 5]  # multi-group varints, negative deltas
    assert rle_counts_from_string(rle_to_string(big)) == big
    # by hand: 5 and 15 fit one group ('5' = 48 + 5, '?' = 48 + 15); 20 has bit 0x10 set, so it needs a
    # second group to stay positive: 'd' = 48 + (20 | 0x20), then '0'; a lone 'D' (48 + 20) is -12
    assert rle_counts_from_string("5?") == [5, 15]
    assert rle_counts_from_string("d0") == [20]
    assert rle_counts_from_string("D") == [-12]


def test_bad_rle_is_reported():
    with pytest.raises(ValueError, match="sum to 19"):
        decode_rle({"size": [4, 5], "counts": [4, 2, 2, 3, 3, 1, 4]})


def test_polygons_rasterise_to_hand_masks():
    rect = coco_polygons_to_mask([[1, 1, 3, 1, 3, 2, 1, 2]], 4, 5)
    expect = np.zeros((4, 5), bool)
    expect[1:3, 1:4] = True
    assert np.array_equal(rect, expect), rect.astype(int)
    # PhraseCut: instances -> polygons -> [x, y]; floats truncated, instances united
    pc = phrasecut_polygons_to_mask([[[[1.7, 0.2], [3.9, 0.2], [3.9, 1.8], [1.7, 1.8]]], [[[0, 3], [0.5, 3]]]], 4, 5)
    expect = np.zeros((4, 5), bool)
    expect[0:2, 1:4] = True
    expect[3, 0] = True  # the 2-point "polygon" is drawn as its outline
    assert np.array_equal(pc, expect), pc.astype(int)


def test_negation_matcher_whole_words_and_nt():
    has = cue_matcher(("no", "not", "n't"))
    assert has("the man NOT wearing a hat") and has("a cup that isn't full") and has("no people")
    assert not has("a knot on the rope") and not has("a nose") and not has("nothing here")


def _image(path, w=5, h=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(path)


def write_refcocog(root):
    images = root / "train2014"
    for name in ("COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"):
        _image(images / name)
    instances = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 4, "width": 5},
                   {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 4, "width": 5}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 1], "area": 6, "iscrowd": 0,
             "segmentation": [[1, 1, 3, 1, 3, 2, 1, 2]]},
            {"id": 11, "image_id": 2, "category_id": 3, "bbox": [1, 0, 3, 3], "area": 6, "iscrowd": 0,
             "segmentation": {"size": [4, 5], "counts": rle_to_string(HAND_COUNTS)}},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [1, 0, 3, 3], "area": 6, "iscrowd": 1,
             "segmentation": {"size": [4, 5], "counts": HAND_COUNTS}},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (root / "instances.json").write_text(json.dumps(instances))

    def sent(i, text):
        return {"sent_id": i, "sent": text, "raw": text, "tokens": text.split()}

    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "category_id": 1, "split": "test", "sent_ids": [0, 1],
         "file_name": "COCO_train2014_000000000001_10.jpg",
         "sentences": [sent(0, "the man not wearing a hat"), sent(1, "a man in red")]},
        {"ref_id": 1, "ann_id": 11, "image_id": 2, "category_id": 3, "split": "test", "sent_ids": [2],
         "file_name": "x", "sentences": [sent(2, "the car without a driver")]},
        {"ref_id": 2, "ann_id": 12, "image_id": 2, "category_id": 3, "split": "val", "sent_ids": [3],
         "file_name": "x", "sentences": [sent(3, "a car with no roof")]},
    ]
    with (root / "refs(umd).p").open("wb") as fh:
        pickle.dump(refs, fh)
    return DatasetConfig(kind="refcocog", refs=str(root / "refs(umd).p"), instances=str(root / "instances.json"),
                         images=str(images))


def test_refcocog_loads_masks_and_filters_negation(tmp_path):
    cfg = write_refcocog(tmp_path)
    data = load_dataset(cfg)
    assert [s.id for s in data.samples] == ["0:0", "0:1", "1:2"]
    rect = np.zeros((4, 5), bool)
    rect[1:3, 1:4] = True
    assert np.array_equal(data.samples[0].load_mask(), rect)
    assert np.array_equal(data.samples[2].load_mask(), HAND)  # compressed string RLE
    assert data.counts["refs"] == 2
    cfg.negation_only = True
    neg = load_dataset(cfg)
    assert [s.text for s in neg.samples] == ["the man not wearing a hat", "the car without a driver"]
    assert neg.counts["samples_before_filter"] == 3 and neg.counts["samples_after_filter"] == 2
    cfg.cues, cfg.split = ("no",), "val"
    val = load_dataset(cfg)
    assert [s.id for s in val.samples] == ["2:3"]
    assert np.array_equal(val.samples[0].load_mask(), HAND)  # uncompressed counts list


def test_refcocog_bad_inputs_name_file_and_entry(tmp_path):
    cfg = write_refcocog(tmp_path)
    inst = json.loads((tmp_path / "instances.json").read_text())
    inst["annotations"][1]["segmentation"]["counts"] = [4, 2, 2]
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    with pytest.raises(InputError, match=r"instances\.json: annotation 11: RLE run lengths sum to 8"):
        load_dataset(cfg)
    (tmp_path / "refs(umd).p").write_bytes(pickle.dumps([datetime.date(2020, 1, 1)]))
    with pytest.raises(InputError, match=r"refs\(umd\)\.p: not a readable refs pickle .*datetime"):
        load_dataset(cfg)
    cfg.refs = str(tmp_path / "missing.p")
    with pytest.raises(InputError, match="missing.p: file not found"):
        load_dataset(cfg)


def write_phrasecut(root):
    _image(root / "images" / "7.jpg")
    tasks = [{"task_id": "7__1", "image_id": 7, "phrase": "table not covered", "ann_ids": [1],
              "instance_boxes": [[1, 0, 3, 2]], "Polygons": [[[[1.7, 0.2], [3.9, 0.2], [3.9, 1.8], [1.7, 1.8]]]],
              "phrase_structure": {}}]
    (root / "refer_test.json").write_text(json.dumps(tasks))
    (root / "image_data_test.json").write_text(json.dumps([{"image_id": 7, "width": 5, "height": 4, "url": ""}]))
    return DatasetConfig(kind="phrasecut", refer=str(root / "refer_test.json"),
                         image_data=str(root / "image_data_test.json"), images=str(root / "images"))


def test_phrasecut_loads(tmp_path):
    data = load_dataset(write_phrasecut(tmp_path))
    (s,) = data.samples
    assert (s.id, s.text, s.image.name) == ("7__1", "table not covered", "7.jpg")
    expect = np.zeros((4, 5), bool)
    expect[0:2, 1:4] = True
    assert np.array_equal(s.load_mask(), expect)


def test_phrasecut_bad_polygon(tmp_path):
    cfg = write_phrasecut(tmp_path)
    tasks = json.loads((tmp_path / "refer_test.json").read_text())
    tasks[0]["Polygons"] = [[[1, 2, 3]]]
    (tmp_path / "refer_test.json").write_text(json.dumps(tasks))
    with pytest.raises(InputError, match=r"refer_test\.json: task 7__1: Polygons\[0\]\[0\]"):
        load_dataset(cfg)


def test_jsonl_loads_png_masks_and_reports_bad_lines(tmp_path):
    _image(tmp_path / "a.png")
    Image.fromarray((HAND * 255).astype(np.uint8)).save(tmp_path / "a_mask.png")
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"image": "a.png", "text": "no cat", "mask": "a_mask.png"}) + "\n")
    data = load_dataset(DatasetConfig(kind="jsonl", jsonl=str(path)))
    assert np.array_equal(data.samples[0].load_mask(), HAND)
    path.write_text(path.read_text() + json.dumps({"image": "a.png", "text": "x", "mask": "gone.png"}) + "\n")
    with pytest.raises(InputError, match=r"data\.jsonl:2: mask .*gone\.png not found"):
        load_dataset(DatasetConfig(kind="jsonl", jsonl=str(path)))
