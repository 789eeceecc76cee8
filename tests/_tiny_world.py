"""A tiny on-disk training world (base model, images, records) shared by the training tests."""

from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.data import NegationRecord, write_records
from negation_encoder.data.referring import ReferringRecord, write_referring
from negation_encoder.testing import tiny

OBJECTS = ["dog", "cat", "car", "bus", "tree", "cup"]


def make_tiny_world(root: Path, n: int = 24) -> dict:
    root = Path(root)
    tok = tiny.build_clip_tokenizer()
    model = tiny.build_clip_model(seed=0, tokenizer=tok)
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    tiny.build_clip_image_processor(32).save_pretrained(base)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
        present, absent = OBJECTS[i % 6], OBJECTS[(i + 2) % 6]
        records.append(NegationRecord(
            id=f"r{i}", image=f"{i}.png", caption=f"a photo of a {present}",
            negated_caption=f"a photo of a {present} with no {absent}", negation_type="absence",
            negated_concept=absent, source="test",
            hard_negatives=[f"a photo of a {present} with a {absent}", f"a photo of no {present}"]))
        if i % 3 == 0:
            records.append(NegationRecord(
                id=f"p{i}", image=f"{i}.png", caption=f"a photo of a {present}",
                negated_caption=f"a photo without a {present}", negation_type="presence",
                negated_concept=present, source="test"))
    data = root / "data.jsonl"
    write_records(data, records)
    return {"base": str(base), "data": str(data), "images": str(images), "root": root}


def make_segmentation_world(root: Path) -> dict:
    """The tiny world plus a tiny CLIPSeg whose CLIP has the tiny base's widths (text 32, projection 24) and
    12 referring records (negated and affirmative, most naming the object a negated one excludes)."""
    root = Path(root)
    w = make_tiny_world(root)
    tiny.build_clipseg(seed=0, projection_dim=24).save_pretrained(root / "clipseg")
    tok = tiny.build_clip_tokenizer()
    from transformers import CLIPSegProcessor, ViTImageProcessor

    CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 32, "width": 32}),
                     tokenizer=tok).save_pretrained(root / "clipseg")
    rng = np.random.default_rng(1)
    refs = root / "refs"
    refs.mkdir()
    records = []
    for i in range(12):
        mask = np.zeros((32, 32), np.uint8)
        mask[4 + i: 14 + i, 3:20] = 255
        Image.fromarray(mask).save(refs / f"m{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(refs / f"i{i}.png")
        other = None
        if i % 3:  # the excluded object, on two records in three (the choice part skips the rest)
            o = np.zeros((32, 32), np.uint8)
            o[4:10, 24:30] = 255
            Image.fromarray(o).save(refs / f"o{i}.png")
            other = f"o{i}.png"
        # an affirmative expression of the referent on negated records but the last
        affirmative = ("a blue cup" if i % 4 == 1 else "a blue cup on the left") if i % 2 and i < 11 else None
        records.append(ReferringRecord(f"r{i}", f"i{i}.png", "the cup that is not red" if i % 2 else "the red cup",
                                       f"m{i}.png", other_mask=other, negated=bool(i % 2), affirmative=affirmative))
    write_referring(refs / "refs.jsonl", records)
    return {**w, "clipseg": str(root / "clipseg"), "refs": str(refs / "refs.jsonl")}
