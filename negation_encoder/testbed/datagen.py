"""The fine-tuning source data of the world, and negation data from it through the real pipelines.

A training split of scenes with one affirmative caption each (the world's COCO), its images written
as PNG files (the trainer reads images from disk, as with real data), VQA-style questions answered
"no" from the scene graph (the world's VQAv2), then P1 / Rand-P1 / P2 / presence with the oracles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.pipelines import CaptionItem, PipelineConfig, PipelineStats, QAItem, run_pipeline
from . import language as L
from .oracle import OracleLLM, OracleMLLM
from .world import CELLS, COLOURS, OBJECTS, Scene, render, sample_scene

TRAIN_SEED = 777


@dataclass
class TrainWorld:
    scenes: list[Scene]
    captions: list[str]
    image_root: Path

    def image_key(self, scene: Scene) -> str:
        return f"{scene.id}.png"


def make_train_world(root: str | Path, n_scenes: int = 1500, seed: int = TRAIN_SEED) -> TrainWorld:
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scenes = [sample_scene(rng, f"train-{i:05d}") for i in range(n_scenes)]
    captions = [L.affirmative_caption(s, rng) for s in scenes]
    for s in scenes:
        path = root / f"{s.id}.png"
        if not path.exists():
            Image.fromarray(render(s)[0]).save(path)
    return TrainWorld(scenes, captions, root)


def caption_items(world: TrainWorld) -> list[CaptionItem]:
    return [CaptionItem(s.id, world.image_key(s), c, s.kinds) for s, c in zip(world.scenes, world.captions)]


def qa_items(world: TrainWorld, seed: int = TRAIN_SEED) -> list[QAItem]:
    """One "no"-answered question per scene: a wrong colour or a wrong position of one object."""
    rng = np.random.default_rng(seed + 1)
    items = []
    for s, c in zip(world.scenes, world.captions):
        obj = s.objects[int(rng.integers(len(s.objects)))]
        if rng.random() < 0.6:
            value = str(rng.choice([x for x in COLOURS if x != obj.colour]))
            q, typ = f"Is the {obj.kind} {value}?", "attribute"
        else:
            value = str(rng.choice([x for x in CELLS if x != obj.cell]))
            q, typ = f"Is the {obj.kind} on the {value}?", "relation"
        items.append(QAItem(f"{s.id}-q", world.image_key(s), c, q, "no", typ, value,
                            {"kind": obj.kind, "value": value}))
    return items


def generate_negation_data(world: TrainWorld, out_dir: str | Path, sources: tuple[str, ...] = ("p1", "p2", "presence"),
                           tokenizer=None, seed: int = 0, progress: bool = True) -> dict[str, tuple[Path, PipelineStats]]:
    """Run each pipeline on the world; returns {source: (jsonl path, stats)}. Resumable."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    llm = OracleLLM(world.captions)
    mllm = OracleMLLM({world.image_key(s): s for s in world.scenes})
    results = {}
    for src in sources:
        cfg = PipelineConfig(pipeline=src, seed=seed, batch_size=128, categories=OBJECTS)
        items = qa_items(world) if src == "p2" else caption_items(world)
        path = out_dir / f"{src}.jsonl"
        stats = run_pipeline(items, path, cfg, llm, mllm, tokenizer=tokenizer, progress=progress)
        results[src] = (path, stats)
    return results
