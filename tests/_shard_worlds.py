"""Tiny offline worlds for the sharding tests: a SD pipeline with a negation encoder and a BLIP judge, a
CLIPSeg with its JSONL data, and the encoder benchmarks' data root with a CLIP model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.testing import tiny

from ._eval_fixtures import write_data_root, write_model

SUBJECTS = [("a street with no cars", "street", "cars", "object", "no"),
            ("a dog not running", "dog", "running", "action", "not"),
            ("a table without a cup", "table", "cup", "object", "without"),
            ("a beach with no people", "beach", "people", "object", "no"),
            ("a cat that is not sleeping", "cat", "sleeping", "action", "not")]


QA = [{"id": "c1", "caption": "a red car on a street", "question": "is there a car?", "choices": ["yes", "no"],
       "answer": "yes", "element_type": "object", "element": "car"},
      {"id": "c1", "caption": "a red car on a street", "question": "what color is the car?",
       "choices": ["red", "blue", "green"], "answer": "red", "element_type": "color", "element": "red"},
      {"id": "c2", "caption": "a dog on the grass", "question": "is there a dog?", "choices": ["yes", "no"],
       "answer": "yes", "element_type": "animal/human", "element": "dog"}]


def write_t2i_world(root: Path, n_prompts: int = 5) -> Path:
    """`sd/` (tiny SD 1.x), `enc/` (a negation text encoder that fits it), `blip/` (judge), `prompts.json`,
    `qa.json` (TIFA questions)."""
    from diffusers import StableDiffusionPipeline

    root.mkdir(parents=True, exist_ok=True)
    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.save_pretrained(root / "sd")
    encoder = tiny.build_clip_text_model(seed=5, tokenizer=tiny.build_clip_tokenizer())
    encoder.save_pretrained(root / "enc" / "text_encoder")
    model, processor = tiny.build_blip_vqa(seed=0)
    model.save_pretrained(root / "blip")
    processor.save_pretrained(root / "blip")
    prompts = [{"id": f"t{i}", "prompt": p, "subject": s, "negated_concepts": [n], "negation_type": k, "cue": c,
                "questions": [f"is there a {s}?", f"is there a {n}?"]}
               for i, (p, s, n, k, c) in enumerate((SUBJECTS * (1 + n_prompts // len(SUBJECTS)))[:n_prompts])]
    for i, p in enumerate(prompts):
        p["id"] = f"t{i}"
    (root / "prompts.json").write_text(json.dumps(prompts))
    (root / "qa.json").write_text(json.dumps(QA))
    return root


def t2i_args(world: Path, out: Path, command: str = "negscore", *extra: str) -> list[str]:
    arms = [] if command == "compare" else ["--arms", "base,swapped"]
    return ["t2i", command, "--prompts", str(world / "prompts.json"), "--pipeline", str(world / "sd"),
            "--encoder", str(world / "enc"), "--judge", str(world / "blip"), "--seeds", "0,1", *arms,
            "--steps", "2", "--height", "32", "--width", "32", "--no-progress", "--resamples", "200",
            "--batch-size", "2", "--device", "cpu", "--out", str(out), *extra]


def write_seg_world(root: Path, n: int = 7) -> Path:
    """`clipseg/` (tiny CLIPSeg + processor), `encoder/` (a CLIPModel that fits it), `data.jsonl` with masks."""
    root.mkdir(parents=True, exist_ok=True)
    seg = tiny.build_clipseg(seed=0, projection_dim=24)
    seg.save_pretrained(root / "clipseg")
    tiny.build_clip_tokenizer().save_pretrained(root / "clipseg")
    tiny.build_clip_image_processor(32).save_pretrained(root / "clipseg")
    tiny.build_clip_model(seed=1, projection_dim=24).save_pretrained(root / "encoder")
    rng = np.random.default_rng(0)
    texts = ["a dog", "a cat without a hat", "no people on the street", "a red car", "the man not sitting",
             "a table with no cup", "a bus"]
    lines = []
    for i in range(n):
        h, w = 24 + 4 * (i % 5), 30 - 2 * (i % 5)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"im{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[2 + i % 5: 12 + i % 5, 3: 14 + i % 5] = 255
        Image.fromarray(mask).save(root / f"m{i}.png")
        lines.append(json.dumps({"id": f"s{i}", "image": f"im{i}.png", "text": texts[i % len(texts)],
                                 "mask": f"m{i}.png"}))
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root


def seg_args(world: Path, out: Path, command: str = "eval", *extra: str) -> list[str]:
    return ["seg", command, "--dataset", "jsonl", "--jsonl", str(world / "data.jsonl"), "--model",
            str(world / "clipseg"), "--encoder", str(world / "encoder"), "--batch-size", "2", "--device", "cpu",
            "--overlays", "1", "--no-progress", "--out", str(out), *extra]


def write_eval_world(root: Path) -> Path:
    """`data/` (every benchmark's files) and `model/` (a tiny CLIP checkpoint folder)."""
    write_data_root(root / "data")
    write_model(root / "model")
    return root


def eval_args(world: Path, out: Path, *extra: str) -> list[str]:
    from negation_encoder.eval.paths import BENCHMARKS

    return ["eval", "--model", str(world / "model"), "--data-root", str(world / "data"), "--bench",
            ",".join(BENCHMARKS), "--batch-size", "3", "--device", "cpu", "--no-progress", "--out", str(out),
            *extra]
