"""A tiny on-disk training world (base model, images, records) shared by the training tests."""

from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.data import NegationRecord, write_records
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
