"""The world's referring segmenter (`negenc testbed pretrain-seg`): a real `CLIPSegForImageSegmentation`
whose CLIP is the committed base (text and vision towers copied in and frozen) and whose decoder is
trained on the world's referring masks.

Why: CLIPSeg was trained with the original CLIP text tower and mostly affirmative phrases; the drop-in
claim is that swapping a negation-aware tower in improves negated referring expressions without
retraining the decoder. Here the decoder sees only affirmative phrases ("the red cup", "the cup on
the top left", "the blue cup on the bottom right"), on scenes that sometimes hold two objects of one
kind in different colours, so the colour and the cell are what tells them apart. The negated
referring set ("the cup that is not red") is built by `referring.write_referring_set` and never
trained on. Its same-kind pairs of objects are `scenes.pair_scene`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from negation_encoder.training.losses import dice_loss

from ..world.scenes import IMAGE_SIZE, Scene, object_masks, pair_scene, sample_scene
from .base_clip import ASSETS, BASE_DIR, world_tokenizer

SEG_DIR = ASSETS / "seg"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIPImageProcessor's defaults, as the base was trained
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class SegConfig:
    seed: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    reduce_dim: int = 64
    decoder_heads: int = 4
    decoder_intermediate: int = 128
    dice_weight: float = 1.0  # objects cover 5-20% of the pixels: BCE alone left predictions timid
    pair_prob: float = 0.5  # share of training scenes with two objects of the referred kind


def affirmative_phrase(scene: Scene, index: int, rng: np.random.Generator) -> str:
    """A phrase that picks out object `index` with affirmative words only."""
    obj = scene.objects[index]
    unique_kind = sum(o.kind == obj.kind for o in scene.objects) == 1
    forms = [f"the {obj.colour} {obj.kind}", f"a {obj.colour} {obj.kind}", f"the {obj.kind} on the {obj.cell}",
             f"the {obj.colour} {obj.kind} on the {obj.cell}"]
    if unique_kind:
        forms += [f"the {obj.kind}", f"a {obj.kind}"]
    return forms[int(rng.integers(len(forms)))]


def training_example(rng: np.random.Generator, scene_id: str, pair_prob: float) -> tuple[np.ndarray, str, np.ndarray]:
    if rng.random() < pair_prob:
        scene, a, b = pair_scene(rng, scene_id)
        index = a if rng.random() < 0.5 else b
    else:
        scene = sample_scene(rng, scene_id, n_objects=(1, 2, 3))
        index = int(rng.integers(len(scene.objects)))
    image, masks = object_masks(scene)
    return image, affirmative_phrase(scene, index, rng), masks[index]


def world_seg_processor(tokenizer=None):
    """`CLIPSegProcessor` that feeds world images as the base CLIP saw them: resized to 32x32, which leaves a
    world image unchanged and brings any other size to what the model takes."""
    from transformers import CLIPSegProcessor, ViTImageProcessor

    image_processor = ViTImageProcessor(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer or world_tokenizer())


def build_world_clipseg(cfg: SegConfig, base: str | Path = BASE_DIR):
    """CLIPSeg with the base CLIP's weights loaded strictly into `model.clip` (every tensor accounted for)."""
    from transformers import CLIPModel, CLIPSegConfig, CLIPSegForImageSegmentation

    clip = CLIPModel.from_pretrained(base)
    tc, vc = clip.config.text_config.to_dict(), clip.config.vision_config.to_dict()
    config = CLIPSegConfig(text_config=tc, vision_config=vc, projection_dim=clip.config.projection_dim,
                           extract_layers=tuple(range(vc["num_hidden_layers"])), reduce_dim=cfg.reduce_dim,
                           decoder_num_attention_heads=cfg.decoder_heads,
                           decoder_intermediate_size=cfg.decoder_intermediate)
    torch.manual_seed(cfg.seed)
    seg = CLIPSegForImageSegmentation(config)
    result = seg.clip.load_state_dict(clip.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"base CLIP does not fit CLIPSeg's CLIP: MISSING {result.missing_keys[:5]}, "
                         f"UNEXPECTED {result.unexpected_keys[:5]}")
    seg.clip.requires_grad_(False)
    return seg


def pretrain_seg(cfg: SegConfig | None = None, out: str | Path = SEG_DIR, base: str | Path = BASE_DIR,
                 progress: bool = True) -> dict:
    """Train the decoder (CLIP frozen) on affirmative referring masks; save model + processor."""
    cfg = cfg or SegConfig()
    rng = np.random.default_rng(cfg.seed)
    seg = build_world_clipseg(cfg, base)
    processor = world_seg_processor()
    params = [p for p in seg.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    seg.train()
    seg.clip.eval()
    start = time.perf_counter()
    losses: list[float] = []
    for step in tqdm(range(cfg.steps), desc="pretrain world CLIPSeg", disable=not progress):
        batch = [training_example(rng, f"seg-{step}-{i}", cfg.pair_prob) for i in range(cfg.batch_size)]
        enc = processor(text=[b[1] for b in batch], images=[b[0] for b in batch], padding=True, return_tensors="pt")
        target = torch.from_numpy(np.stack([b[2] for b in batch])).float()
        logits = seg(**enc).logits.view(len(batch), IMAGE_SIZE, IMAGE_SIZE)
        loss = F.binary_cross_entropy_with_logits(logits, target) + cfg.dice_weight * dice_loss(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if not progress and step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} {time.perf_counter() - start:.0f}s", flush=True)
    seg.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seg.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"config": asdict(cfg), "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(np.mean(losses[-100:])), 4), "torch_threads": torch.get_num_threads(),
            "trainable_parameters": sum(p.numel() for p in params), "clip": "base (frozen)",
            "command": "negenc testbed pretrain-seg"}
    (out / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
