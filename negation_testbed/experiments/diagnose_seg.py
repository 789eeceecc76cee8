"""Which object can the frozen world CLIPSeg pick for a negated expression? (`python -m
negation_testbed.experiments.diagnose_seg --json out.json [--encoder FOLDER ...]`)

A text encoder hands CLIPSeg one conditional embedding per text, whatever the image. So the best object
choice ANY encoder can reach on "the cup that is not red" is that of one free embedding per (kind, excluded
colour), fitted through the frozen decoder. The free vector lives where the encoder's pooled state lives
(before the text tower's final layer norm and projection, both frozen here), so the ceiling counts only
embeddings a text tower can actually emit. It is fitted on training scenes (`seg_compare.ROUTE_FIT_SEED`'s
draw, with BCE + Dice on the referred object's mask, seg_loss's own loss) and scored on a validation draw
of seg-compare's construction (`--eval-seed`, 7 by default; seg-compare scores seed 0), beside two
references: the object named by its own colour ("the blue cup", the control's wording: what the decoder
does when told) and the kind alone ("the cup": no choice at all, chance is 0.5).

With `--encoder`, each encoder's object choice on the evaluated negated forms of the same scenes is
reported too: how much of the ceiling a trained tower reaches.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from negation_encoder.training.losses import dice_loss, masked_mean

from ..drop_in.seg_compare import ROUTE_FIT_SEED
from ..world import language as L
from ..world.referring import referring_pairs
from ..world.scenes import COLOURS, OBJECTS, object_masks


@dataclass(frozen=True)
class SegCeilingConfig:
    train_samples: int = 3000
    eval_samples: int = 400
    eval_seed: int = 7
    steps: int = 600
    lr: float = 3e-2
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_samples", "eval_samples", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps < 0 or not self.lr > 0:
            raise ValueError(f"steps must be >= 0 and lr > 0, got steps {self.steps}, lr {self.lr}")
        if self.eval_seed in (0, ROUTE_FIT_SEED):
            raise ValueError(f"eval_seed {self.eval_seed} is seg-compare's evaluated draw or the fitting draw; pick "
                             "another (7 is the validation draw)")


@dataclass
class _Set:
    pixels: torch.Tensor  # (N, 3, H, W)
    masks: torch.Tensor  # (N, H, W) the referred object
    others: torch.Tensor  # (N, H, W) the other object of its kind
    kind: torch.Tensor  # (N,) index into OBJECTS
    excluded: torch.Tensor  # (N,) index into COLOURS: the other object's colour
    texts: dict[str, list[str]]  # wording -> one text per sample


def _draw(n: int, seed: int, processor) -> _Set:
    images, masks, others, kinds, excluded = [], [], [], [], []
    texts: dict[str, list[str]] = {"named colour": [], "kind only": [], "negated": []}
    colours = list(COLOURS)
    for scene, target, other, form in referring_pairs(n, seed):
        t, o = scene.objects[target], scene.objects[other]
        image, object_mask = object_masks(scene)
        images.append(image)
        masks.append(object_mask[target])
        others.append(object_mask[other])
        kinds.append(OBJECTS.index(t.kind))
        excluded.append(colours.index(o.colour))
        texts["named colour"].append(f"the {t.colour} {t.kind}")
        texts["kind only"].append(f"the {t.kind}")
        texts["negated"].append(form.format(kind=t.kind, value=o.colour))
    pixels = processor.image_processor(images=images, return_tensors="pt").pixel_values
    as_float = lambda arrays: torch.from_numpy(np.stack(arrays)).float()  # noqa: E731
    return _Set(pixels, as_float(masks), as_float(others), torch.tensor(kinds), torch.tensor(excluded), texts)


def _logits(seg, pixels: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    out = seg(pixel_values=pixels, conditional_embeddings=cond).logits
    return out.reshape(len(pixels), *out.shape[-2:])


@torch.no_grad()
def object_choice(seg, data: _Set, cond: torch.Tensor, batch_size: int = 100) -> float:
    """Share of samples whose mean probability on the referred object beats the other object's: the
    measure `seg_compare.target_wins` reports (the masks here are at the decoder's size, as the images are)."""
    wins = []
    for i in range(0, len(data.pixels), batch_size):
        p = torch.sigmoid(_logits(seg, data.pixels[i: i + batch_size], cond[i: i + batch_size]))
        wins.append((masked_mean(p, data.masks[i: i + batch_size]) > masked_mean(p, data.others[i: i + batch_size])).float())
    return float(torch.cat(wins).mean())


@torch.no_grad()
def text_conditions(seg, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """The projected embeddings CLIPSeg's own text tower gives these texts (what it conditions on)."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i: i + batch_size], padding=True, return_tensors="pt")
        out.append(seg.clip.get_text_features(**enc).pooler_output)
    return torch.cat(out)


def seg_ceiling(cfg: SegCeilingConfig = SegCeilingConfig(), encoders: Sequence[str | Path] = ()) -> dict:
    """Object choice of the named colour, the kind alone, the fitted free embeddings (the ceiling) and each
    encoder's evaluated negated forms, on `cfg.eval_samples` validation scenes."""
    from transformers import CLIPModel, CLIPSegForImageSegmentation

    from integrations.clipseg import swap_clipseg_text_encoder

    from ..instruments.segmenter import SEG_DIR, world_seg_processor

    torch.manual_seed(cfg.seed)
    seg = CLIPSegForImageSegmentation.from_pretrained(SEG_DIR).eval().requires_grad_(False)
    processor = world_seg_processor()
    tok = processor.tokenizer
    train = _draw(cfg.train_samples, ROUTE_FIT_SEED, processor)
    val = _draw(cfg.eval_samples, cfg.eval_seed, processor)
    res: dict = {"config": asdict(cfg)}
    for name in ("named colour", "kind only"):
        res[name] = object_choice(seg, val, text_conditions(seg, tok, val.texts[name]))
    # the free pre-norm vectors, one per (kind, excluded colour), start at the pooled state of "the {kind}"
    text = seg.clip.text_model
    with torch.no_grad():
        enc = tok([f"the {k}" for k in OBJECTS], padding=True, return_tensors="pt")
        before_norm = text(**enc, output_hidden_states=True).hidden_states[-1]  # the encoder's output, pre-norm
        start = before_norm[torch.arange(len(OBJECTS)), enc["attention_mask"].sum(1) - 1]  # at the end token
    free = torch.nn.Parameter(start[:, None, :].repeat(1, len(COLOURS), 1).clone())
    emit = lambda k, c: seg.clip.text_projection(text.final_layer_norm(free[k, c]))  # noqa: E731
    opt = torch.optim.Adam([free], lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in range(cfg.steps):
        idx = torch.randint(len(train.pixels), (cfg.batch_size,), generator=g)
        logits = _logits(seg, train.pixels[idx], emit(train.kind[idx], train.excluded[idx]))
        target = F.interpolate(train.masks[idx][:, None], size=logits.shape[-2:], mode="nearest")[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 5))
    with torch.no_grad():
        res["free embedding (ceiling)"] = object_choice(seg, val, emit(val.kind, val.excluded))
        res["free embedding on its training scenes"] = object_choice(seg, train, emit(train.kind, train.excluded))
    res["fit_loss"] = {"first": losses[0] if losses else None, "last": losses[-1] if losses else None}
    res["encoders"] = {}
    for folder in encoders:
        swapped = CLIPSegForImageSegmentation.from_pretrained(SEG_DIR).eval()
        swap_clipseg_text_encoder(swapped, CLIPModel.from_pretrained(folder))
        res["encoders"][str(folder)] = {
            "negated (evaluated forms)": object_choice(swapped, val, text_conditions(swapped, tok, val.texts["negated"])),
            "named colour": object_choice(swapped, val, text_conditions(swapped, tok, val.texts["named colour"])),
        }
    res["forms"] = list(L.REFERRING_FORMS)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--encoder", action="append", default=[], help="a fine-tuned CLIPModel folder (repeatable)")
    p.add_argument("--json", default=None, help="write the figures here")
    for f in ("train_samples", "eval_samples", "eval_seed", "steps", "batch_size", "seed"):
        p.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(SegCeilingConfig, f))
    p.add_argument("--lr", type=float, default=SegCeilingConfig.lr)
    args = p.parse_args(argv)
    try:
        cfg = SegCeilingConfig(**{f: getattr(args, f) for f in SegCeilingConfig.__dataclass_fields__})
    except ValueError as e:
        p.error(str(e))
    res = seg_ceiling(cfg, args.encoder)
    for k, v in res.items():
        if isinstance(v, float):
            print(f"{k:40s} {v:.3f}")
    for folder, figures in res["encoders"].items():
        print(folder, {k: round(v, 3) for k, v in figures.items()})
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
