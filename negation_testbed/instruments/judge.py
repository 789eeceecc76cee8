"""The world's VQA judge (`negenc testbed pretrain-judge`): a tiny CNN that answers presence questions.

Why: Neg Score needs a judge that reads images the way BLIP does for real photos. In the world the
annotations are exact, so a small classifier trained on rendered scenes answers "Is there a fork?"
(and "Is there a red cup?") near-perfectly on real renders; on generated images its answers are what
the Neg Score counts. It follows `eval_t2i.judges.Judge` (`yes_probability`, `choice_likelihood`), so
`eval_t2i.negscore` uses it unchanged. Training adds pixel noise and blur so that slightly imperfect
generated objects are still read by kind and colour rather than rejected as off-distribution.

Generated images fail in ways renders never do: empty cells on a background tinted toward
a palette colour, faint washes and specks of paint, partly drawn, faded or bloated glyphs, blotchy
colour noise. A judge trained on clean renders read an empty reddish background as "a red fork".
So a share of training images (`hard_prob`) is rendered with those failure modes
(`generated_like`), labelled by what the renderer drew: a glyph stays its kind when at least 70% of
it is drawn (faded or cut), and washes, specks, shapeless smears and tints are no object.

Heads, per 16x16 cell (the world holds at most one object a cell): which kind (or none) and its
colour. P(yes) for "Is there a cup?" is 1 - prod over cells of (1 - P(cup in cell)); for "Is there a
red cup?" it is P(cup) x P(red) in the cell most likely to hold the cup.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..world.scenes import (
    BACKGROUND,
    CELL,
    CELL_ORIGIN,
    CELLS,
    COLOURS,
    IMAGE_SIZE,
    OBJECTS,
    Scene,
    SceneObject,
    render,
    sample_scene,
)
from .base_clip import ASSETS

JUDGE_DIR = ASSETS / "judge"
COLOUR_NAMES = tuple(COLOURS)
_KIND = "|".join(OBJECTS)
_COL = "|".join(COLOUR_NAMES)
_PRESENCE_Q = re.compile(rf"^\s*is there (?:an? |any )?(?:({_COL}) )?({_KIND})s?\s*\??\s*$", re.I)
_COLOUR_Q = re.compile(rf"^\s*what colou?r is the ({_KIND})\s*\??\s*$", re.I)


@dataclass
class JudgeConfig:
    seed: int = 0
    steps: int = 2000  # more than clean renders need: half the images are the harder generated-like ones
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    hidden: int = 128
    max_noise: float = 16.0  # pixel-noise std drawn per image in [0, max_noise] (uint8 units)
    blur_prob: float = 0.3
    hard_prob: float = 0.5  # share of images rendered with generated-image failure modes (`generated_like`)
    lowfreq_noise: float = 12.0  # max std (uint8 units) of blotchy 8x8-upsampled colour noise, all images


class JudgeNet(nn.Module):
    """A CNN shared over the four 16x16 cells: per cell, which kind is there (or none) and its colour.

    Why per cell: the world puts at most one object in a cell, so one small network applied to each
    cell sees four labelled examples per image and needs no notion of where it is; image-level
    answers are combined from the cells (`image_heads`)."""

    def __init__(self, width: int = 32, hidden: int = 128, kinds: int = len(OBJECTS), colours: int = len(COLOURS)):
        super().__init__()
        self.kinds, self.colours = kinds, colours
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(), nn.Linear(2 * width * (CELL // 4) ** 2, hidden), nn.GELU())
        self.kind = nn.Linear(hidden, kinds + 1)  # the last class: empty cell
        self.colour = nn.Linear(hidden, colours)

    @staticmethod
    def cells(pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) -> (N * 4, 3, 16, 16) in `scenes.CELLS` order."""
        n = len(pixels)
        x = pixels.view(n, 3, 2, CELL, 2, CELL).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n * 4, 3, CELL, CELL)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell logits: kind (N, 4, K + 1) and colour (N, 4, C)."""
        h = self.features(self.cells(pixels))
        n = len(pixels)
        return self.kind(h).view(n, 4, -1), self.colour(h).view(n, 4, -1)


def to_input(images: list) -> torch.Tensor:
    """PIL images or uint8 arrays (any size; resized to the world's 32x32) -> (N, 3, 32, 32) in [0, 1]."""
    from PIL import Image

    arrays = []
    for im in images:
        if isinstance(im, Image.Image):
            im = im.convert("RGB")
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
            im = np.asarray(im)
        arrays.append(np.asarray(im, dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _targets(objects: list[list[SceneObject]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell: the kind index (K = empty) and the colour index (-100 where empty: ignored)."""
    kind = torch.full((len(objects), 4), len(OBJECTS), dtype=torch.long)
    colour = torch.full((len(objects), 4), -100, dtype=torch.long)
    for i, objs in enumerate(objects):
        for o in objs:
            c = CELLS.index(o.cell)
            kind[i, c] = OBJECTS.index(o.kind)
            colour[i, c] = COLOUR_NAMES.index(o.colour)
    return kind, colour


def image_heads(kind_logits: torch.Tensor, colour_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells -> image: P(kind present) = 1 - prod over cells of (1 - p_cell(kind)); the colour of a kind is
    read in the cell most likely to hold it. Returns (N, K) presence and (N, K, C) colour distributions."""
    pk = kind_logits.softmax(-1)[..., :-1]  # (N, 4, K)
    presence = 1 - (1 - pk).prod(1)
    pc = colour_logits.softmax(-1)  # (N, 4, C)
    best = pk.argmax(1)  # (N, K): the cell for each kind
    colour = torch.gather(pc, 1, best[..., None].expand(-1, -1, pc.shape[-1]))
    return presence, colour


def _augment(x: torch.Tensor, cfg: JudgeConfig, gen: torch.Generator) -> torch.Tensor:
    std = torch.rand(len(x), 1, 1, 1, generator=gen) * (cfg.max_noise / 255.0)
    x = x + std * torch.randn(x.shape, generator=gen)
    if cfg.lowfreq_noise > 0:  # blotchy colour: generated backgrounds and objects drift in patches
        lf = torch.rand(len(x), 1, 1, 1, generator=gen) * (cfg.lowfreq_noise / 255.0)
        x = x + lf * F.interpolate(torch.randn(len(x), 3, 8, 8, generator=gen), size=x.shape[-2:], mode="bilinear")
    blur = torch.rand(len(x), generator=gen) < cfg.blur_prob
    if blur.any():
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        kernel = kernel.expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return x.clamp(0, 1)


def parse_question(question: str) -> tuple[str, str, str | None]:
    """("presence", kind, colour or None) or ("colour", kind, None); ValueError names an unknown form."""
    m = _PRESENCE_Q.match(question)
    if m:
        return "presence", m.group(2).lower(), (m.group(1) or "").lower() or None
    m = _COLOUR_Q.match(question)
    if m:
        return "colour", m.group(1).lower(), None
    raise ValueError(f"the world judge cannot read {question!r}: it answers 'Is there a [colour] <object>?' and "
                     f"'What colour is the <object>?' about {', '.join(OBJECTS)}")


class WorldJudge:
    """`eval_t2i.judges.Judge` over a trained `JudgeNet` (CPU, fp32, deterministic)."""

    def __init__(self, net: JudgeNet, name: str = "world-judge", batch_size: int = 256):
        self.net, self.name, self.batch_size = net.eval(), name, batch_size

    @classmethod
    def from_pretrained(cls, folder: str | Path = JUDGE_DIR) -> WorldJudge:
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            cfg = json.loads((folder / "config.json").read_text())
            state = load_file(str(folder / "model.safetensors"))
        except (OSError, json.JSONDecodeError) as e:
            raise OSError(f"{folder} does not appear to hold a world judge (config.json + model.safetensors): {e}. "
                          f"Run `negenc testbed pretrain-judge --out {folder}`.") from e
        net = JudgeNet(width=cfg["width"], hidden=cfg["hidden"])
        net.load_state_dict(state)
        return cls(net, name=f"world-judge:{folder.name}")

    @torch.no_grad()
    def _heads(self, images: list) -> tuple[torch.Tensor, torch.Tensor]:
        pres, cols = [], []
        for i in range(0, len(images), self.batch_size):
            p, c = image_heads(*self.net(to_input(images[i: i + self.batch_size])))
            pres.append(p)
            cols.append(c)
        return torch.cat(pres), torch.cat(cols)

    def yes_probability(self, images: list, questions: list[str]) -> list[float]:
        if len(images) != len(questions):
            raise ValueError(f"one image per question expected: {len(images)} images, {len(questions)} questions")
        parsed = [parse_question(q) for q in questions]
        if not images:
            return []
        pres, cols = self._heads(images)
        out = []
        for i, (form, kind, colour) in enumerate(parsed):
            if form != "presence":
                raise ValueError(f"{questions[i]!r} is not a yes/no question")
            k = OBJECTS.index(kind)
            p = pres[i, k]
            if colour is not None:
                p = p * cols[i, k, COLOUR_NAMES.index(colour)]
            out.append(float(p))
        return out

    def choice_likelihood(self, images: list, questions: list[str],
                          choices_per_question: list[list[str]]) -> list[list[float]]:
        """Colour questions: log P(colour | kind); yes/no questions: log P(yes) and log P(no)."""
        if not (len(images) == len(questions) == len(choices_per_question)):
            raise ValueError(f"one image per question expected: {len(images)} images, {len(questions)} questions, "
                             f"{len(choices_per_question)} choice lists")
        parsed = [parse_question(q) for q in questions]
        if not images:
            return []
        pres, cols = self._heads(images)
        out = []
        for i, ((form, kind, colour), choices) in enumerate(zip(parsed, choices_per_question, strict=True)):
            k = OBJECTS.index(kind)
            if form == "colour":
                dist = {c: float(torch.log(cols[i, k, j].clamp_min(1e-12))) for j, c in enumerate(COLOUR_NAMES)}
            else:
                p = pres[i, k] * (cols[i, k, COLOUR_NAMES.index(colour)] if colour else 1.0)
                dist = {"yes": float(torch.log(p.clamp_min(1e-12))), "no": float(torch.log((1 - p).clamp_min(1e-12)))}
            out.append([dist.get(c.strip().lower(), float("-inf")) for c in choices])
        return out


_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]


def _blob(rng: np.random.Generator, cell: str, pixels: int) -> np.ndarray:
    """A random connected smear of about `pixels` pixels inside a cell (a random walk of 2x2 dabs)."""
    oy, ox = CELL_ORIGIN[cell]
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    y, x = oy + int(rng.integers(2, CELL - 3)), ox + int(rng.integers(2, CELL - 3))
    while mask.sum() < pixels:
        mask[y: y + 2, x: x + 2] = True
        y = int(np.clip(y + rng.integers(-1, 2), oy, oy + CELL - 2))
        x = int(np.clip(x + rng.integers(-1, 2), ox, ox + CELL - 2))
    return mask


def _glyph_likeness(mask: np.ndarray, cell: str) -> float:
    """The best IoU of a cell's mask with any glyph at any size and offset `render` allows."""
    from .reader import glyph_templates

    oy, ox = CELL_ORIGIN[cell]
    flat = mask[oy: oy + CELL, ox: ox + CELL].ravel().astype(np.float32)
    templates, _ = glyph_templates()
    inter = templates @ flat
    return float((inter / (templates.sum(1) + flat.sum() - inter)).max())


def generated_like(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, list[SceneObject]]:
    """The scene rendered with the failure modes of generated images, and the objects still present.

    Per image: the background tinted toward a palette colour or shifted (half the images). Per object:
    faded toward the background, or cut by a random half-plane keeping >= 70% of the glyph (a third
    of the time each); an object stays labelled. (No dilated glyphs: a bloated small glyph is a disc or
    a square to any eye, so labelling it by its kind would teach label noise.) Per empty cell: a faint
    wash of a palette colour (blended <= 35%), a speck of paint (<= 10 pixels), or a full-colour smear
    that is clearly no glyph (best IoU with every glyph < 0.35) (a quarter each): no object.
    """
    img, masks = render(scene)
    img = img.astype(np.float32)
    bg = np.array(BACKGROUND[scene.theme], dtype=np.float32)
    occupied = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for m in masks.values():
        occupied |= m
    if rng.random() < 0.5:
        shift = (rng.uniform(0.1, 0.45) * (_PALETTE[rng.integers(len(_PALETTE))] - bg) if rng.random() < 0.5
                 else rng.normal(0, 25, 3))
        img[~occupied] += shift
        bg = bg + shift
    for obj in scene.objects:
        m = masks[obj.kind]
        r = rng.random()
        if r < 1 / 3:
            img[m] = img[m] + rng.uniform(0.1, 0.35) * (bg - img[m])
        elif r < 2 / 3:
            ys, xs = np.nonzero(m)
            theta = rng.uniform(0, 2 * np.pi)
            proj = (_YY - ys.mean()) * np.sin(theta) + (_XX - xs.mean()) * np.cos(theta)
            cut = m & (proj > np.quantile(proj[m], rng.uniform(0.7, 1.0)))
            img[cut] = bg + rng.normal(0, 8, (int(cut.sum()), 3))
    taken = {o.cell for o in scene.objects}
    for cell in CELLS:
        if cell in taken:
            continue
        r = rng.random()
        colour = _PALETTE[rng.integers(len(_PALETTE))]
        if r < 0.25:
            wash = _blob(rng, cell, int(rng.integers(20, 90)))
            img[wash] += rng.uniform(0.1, 0.35) * (colour - img[wash])
        elif r < 0.5:
            speck = _blob(rng, cell, int(rng.integers(2, 11)))
            img[speck] = colour + rng.normal(0, 10, 3)
        elif r < 0.75:
            smear = _blob(rng, cell, int(rng.integers(16, 60)))
            if _glyph_likeness(smear, cell) < 0.35:  # clearly no glyph (a glyph-like blob is not used)
                img[smear] = colour + rng.normal(0, 6, 3)
    return np.clip(img, 0, 255).astype(np.uint8), list(scene.objects)


def _batch(rng: np.random.Generator, n: int, tag: str, hard_prob: float = 0.0):
    """n scenes: clean renders, or (with probability `hard_prob`) `generated_like` ones."""
    scenes = [sample_scene(rng, f"{tag}-{i}", n_objects=(1, 2, 3)) for i in range(n)]
    images, objects = [], []
    for s in scenes:
        if rng.random() < hard_prob:
            image, objs = generated_like(s, rng)
        else:
            image, objs = render(s)[0], list(s.objects)
        images.append(image)
        objects.append(objs)
    return objects, to_input(images)


@torch.no_grad()
def heldout_accuracy(judge: WorldJudge, n_scenes: int = 1000, seed: int = 12345, hard: bool = False) -> dict:
    """Presence accuracy over every (scene, kind) pair and colour accuracy over present objects, on
    scenes drawn with a seed the training never used (`hard`: rendered by `generated_like`)."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, f"heldout-{i}", n_objects=(1, 2, 3)) for i in range(n_scenes)]
    drawn = [generated_like(s, rng) if hard else (render(s)[0], s.objects) for s in scenes]
    pres, cols = judge._heads([d[0] for d in drawn])
    presence = torch.zeros(len(scenes), len(OBJECTS))
    colour = torch.full((len(scenes), len(OBJECTS)), -100, dtype=torch.long)
    for i, (_, objs) in enumerate(drawn):
        for o in objs:
            presence[i, OBJECTS.index(o.kind)] = 1.0
            colour[i, OBJECTS.index(o.kind)] = COLOUR_NAMES.index(o.colour)
    present_acc = float(((pres > 0.5).float() == presence).float().mean())
    mask = colour >= 0
    colour_acc = float((cols.argmax(-1)[mask] == colour[mask]).float().mean())
    scene_exact = float(((pres > 0.5).float() == presence).all(-1).float().mean())
    return {"presence_accuracy": present_acc, "colour_accuracy": colour_acc, "scene_exact": scene_exact,
            "scenes": n_scenes, "seed": seed}


def pretrain_judge(cfg: JudgeConfig | None = None, out: str | Path = JUDGE_DIR, progress: bool = True) -> dict:
    from safetensors.torch import save_file

    cfg = cfg or JudgeConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = JudgeNet(cfg.width, cfg.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    start = time.perf_counter()
    net.train()
    for step in tqdm(range(cfg.steps), desc="pretrain world judge", disable=not progress):
        objects, x = _batch(rng, cfg.batch_size, f"judge-{step}", cfg.hard_prob)
        kind, colour = _targets(objects)
        k, c = net(_augment(x, cfg, gen))
        loss = F.cross_entropy(k.reshape(-1, k.shape[-1]), kind.reshape(-1)) + \
            F.cross_entropy(c.reshape(-1, c.shape[-1]), colour.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps({"width": cfg.width, "hidden": cfg.hidden, "objects": list(OBJECTS),
                                                 "colours": list(COLOUR_NAMES)}, indent=2) + "\n")
    seconds = round(time.perf_counter() - start, 1)
    acc = heldout_accuracy(WorldJudge(net))
    hard = heldout_accuracy(WorldJudge(net), hard=True)
    info = {"config": asdict(cfg), "seconds": seconds, "final_loss": round(loss.item(), 4),
            "torch_threads": torch.get_num_threads(), "heldout": acc, "heldout_generated_like": hard,
            "command": "negenc testbed pretrain-judge"}
    (out / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
