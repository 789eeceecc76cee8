"""Contrastive pretraining of the world's base CLIP (`negenc testbed pretrain`).

The base must be what real CLIP is: good at affirmative retrieval, blind to negation. It sees only
alt-text captions, plus a LAION-like sliver whose negation cues sit on objects that are present,
so cue words become known tokens with no meaning of absence. Deterministic for a given seed; the
result is committed under `negation_testbed/assets/base` so the demo never pretrains.
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

from negation_encoder.offline import build_clip_tokenizer, clip_config
from negation_encoder.splitting import find_cues, has_negation_cue

from ..world import language as L
from ..world.scenes import IMAGE_SIZE, render, sample_scene

ASSETS = Path(__file__).parent.parent / "assets"
BASE_DIR = ASSETS / "base"


@dataclass
class PretrainConfig:
    seed: int = 0
    steps: int = 2000  # what the committed base was trained with (pretrain_info.json)
    batch_size: int = 256
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.1
    sliver: float = 0.03  # share of captions with misaligned negation cues (LAION: 0.70%)
    text_hidden: int = 64
    text_layers: int = 4
    vision_hidden: int = 64
    vision_layers: int = 3
    projection_dim: int = 64
    heads: int = 4


def world_tokenizer():
    return build_clip_tokenizer(L.world_vocabulary())


def world_image_processor():
    """Resize (shortest edge) and centre-crop to the world's 32x32, as CLIP's processor does: world images
    pass through unchanged (a 32x32 image is its own resize and crop, bit for bit), and an image of any
    other size a user brings is brought to the size the vision tower takes instead of crashing it."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(do_resize=True, do_center_crop=True,
                              size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def corpus_negation_ratio(captions: list[str]) -> dict[str, float]:
    """The NegationCLIP paper's Table 1 for a caption corpus: caption- and word-level negation ratios."""
    words = sum(len(c.split()) for c in captions)
    neg_caps = sum(has_negation_cue(c) for c in captions)
    neg_words = sum(len(find_cues(c)) for c in captions)
    return {"captions": len(captions), "negation_captions": neg_caps,
            "caption_ratio": neg_caps / max(1, len(captions)), "words": words,
            "negation_words": neg_words, "word_ratio": neg_words / max(1, words)}


def pretrain(cfg: PretrainConfig | None = None, out: str | Path = BASE_DIR, progress: bool = True) -> dict:
    from transformers import CLIPModel

    cfg = cfg or PretrainConfig()

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer = world_tokenizer()
    processor = world_image_processor()
    config = clip_config(tokenizer, text_hidden_size=cfg.text_hidden, text_layers=cfg.text_layers,
                              vision_hidden_size=cfg.vision_hidden, vision_layers=cfg.vision_layers,
                              projection_dim=cfg.projection_dim, image_size=IMAGE_SIZE, patch_size=16,
                              num_attention_heads=cfg.heads)
    model = CLIPModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    start = time.perf_counter()
    seen_captions: list[str] = []
    bar = tqdm(range(cfg.steps), desc="pretrain base CLIP", disable=not progress)
    for step in bar:
        scenes = [sample_scene(rng, f"pt-{step}-{i}", n_objects=(1, 2, 3)) for i in range(cfg.batch_size)]
        captions = [L.pretraining_caption(s, rng, cfg.sliver) for s in scenes]
        if step < 40:
            seen_captions += captions
        pixels = processor(images=[render(s)[0] for s in scenes], return_tensors="pt").pixel_values
        enc = tokenizer(captions, padding=True, return_tensors="pt")
        res = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixels)
        labels = torch.arange(len(scenes))
        loss = (F.cross_entropy(res.logits_per_image, labels) + F.cross_entropy(res.logits_per_text, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"config": asdict(cfg), "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(loss.item(), 4), "torch_threads": torch.get_num_threads(), "corpus_negation": corpus_negation_ratio(seen_captions),
            "command": "negenc testbed pretrain"}
    (out / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
