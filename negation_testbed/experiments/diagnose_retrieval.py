"""Why negated text-to-image retrieval does not move: a diagnosis on the world (`python -m
negation_testbed.experiments.diagnose_retrieval --json out.json [--model FINETUNED_DIR]`).

Three questions, each answered without touching benchmark items for anything but evaluation:

(a) Is the information there? Presence of each object (and of each object in each colour) is
    linearly decoded from the frozen image embeddings of the base: logistic regression fitted on
    training-world scenes, accuracy on held-out scenes.
(b) Is the target reachable at all? A FREE text embedding (a vector optimised directly against the
    frozen image embeddings, no encoder) per query must rank the target above its counterfactuals
    (the same scene with the negated object in it); and a compositional free reader (one vector per
    affirmed (object, colour) plus one per negated object, summed) is fitted on training-world
    groups and tested on other groups, so reachability with a simple, generalising text side is known.
(c) How far is a real text tower? The base and a fine-tuned checkpoint are scored (group top-1 and
    where the target ranks in its group), and the base text tower is fitted directly to the group
    objective on training groups, in fine-tuning wording, to separate capacity from data and loss.

Groups come from `twins.build_suite` with seeds other than `BENCH_SEED`: the same construction,
other scenes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from negation_encoder.encoding import encode_images, encode_texts, text_features
from negation_encoder.eval import group_top1_accuracy, recall_at_k_any

from ..instruments.base_clip import BASE_DIR
from ..world import language as L
from ..world.scenes import COLOURS, OBJECTS, Scene, render, sample_scene
from ..world.twins import BENCH_SEED, Suite, build_suite, evaluate, negated_validity

PROBE_SEED, HELDOUT_PROBE_SEED = 4242, 4343
TRAIN_GROUP_SEED, HELDOUT_GROUP_SEED = 5151, 5252


@dataclass
class DiagnoseConfig:
    base: str = str(BASE_DIR)
    model: str | None = None  # a fine-tuned CLIPModel folder (e.g. `negenc demo`'s run/model)
    probe_scenes: int = 3000
    heldout_scenes: int = 1000
    train_groups: int = 1000
    heldout_groups: int = 200
    bench_size: int = 500
    free_steps: int = 300
    tower_steps: int = 300
    tower_lr: float = 1e-4
    seed: int = 0


def _load(folder: str | Path):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    return (CLIPModel.from_pretrained(folder).eval(), CLIPTokenizer.from_pretrained(folder),
            CLIPImageProcessor.from_pretrained(folder))


def scene_embeddings(model, processor, scenes: Sequence[Scene]) -> torch.Tensor:
    return encode_images(model, processor, [Image.fromarray(render(s)[0]) for s in scenes])


# ---------------------------------------------------------------------------------------------
# (a) linear decodability of presence


def _presence_targets(scenes: Sequence[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    kinds = torch.tensor([[float(s.has(k)) for k in OBJECTS] for s in scenes])
    pairs = torch.tensor([[float(any(o.kind == k and o.colour == c for o in s.objects)) for k in OBJECTS
                           for c in COLOURS] for s in scenes])
    return kinds, pairs


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, steps: int = 500, l2: float = 1e-4) -> torch.nn.Linear:
    """Independent logistic regressions, one per column of y, fitted jointly (full batch, L-BFGS).
    Positives are re-weighted to the negatives' mass, so rare columns (an object in one colour) are
    not fitted as "never"."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    pos_weight = (1 - y.mean(0)) / y.mean(0).clamp(min=1e-3)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(x), y, pos_weight=pos_weight) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def _balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per column: mean of the true-positive and true-negative rates (0.5 = chance at any base rate)."""
    pos, neg = y > 0.5, y < 0.5
    tpr = (pred & pos).sum(0) / pos.sum(0).clamp(min=1)
    tnr = (~pred & neg).sum(0) / neg.sum(0).clamp(min=1)
    return (tpr + tnr) / 2


def presence_probe(train_x: torch.Tensor, train_scenes: Sequence[Scene], test_x: torch.Tensor,
                   test_scenes: Sequence[Scene]) -> dict:
    """Held-out accuracy of per-object (and per object-in-colour) presence probes."""
    ytr, ptr = _presence_targets(train_scenes)
    yte, pte = _presence_targets(test_scenes)
    with torch.no_grad():
        kind_pred = _fit_logistic(train_x, ytr)(test_x) > 0
        pair_pred = _fit_logistic(train_x, ptr)(test_x) > 0
    acc = (kind_pred == (yte > 0.5)).float().mean(0)
    majority = torch.maximum(yte.mean(0), 1 - yte.mean(0))
    return {"per_object_accuracy": {k: round(float(a), 4) for k, a in zip(OBJECTS, acc, strict=True)},
            "object_accuracy_mean": float(acc.mean()), "object_accuracy_min": float(acc.min()),
            "object_majority_baseline_mean": float(majority.mean()),
            "object_balanced_accuracy_mean": float(_balanced_accuracy(kind_pred, yte).mean()),
            "object_colour_balanced_accuracy_mean": float(_balanced_accuracy(pair_pred, pte).mean())}


# ---------------------------------------------------------------------------------------------
# (b) reachability with free text embeddings


def _group_tensor(suite: Suite) -> torch.Tensor:
    return torch.tensor([list(q.group) for q in suite.negated])


def _scale(model) -> float:
    return float(model.logit_scale.detach().exp())


def free_embedding_reachability(img: torch.Tensor, suite: Suite, scale: float, steps: int) -> dict:
    """One free vector per query, optimised to put the target first in its group: the upper bound of
    any text encoder on these frozen images (reachable = the target is separable from its group)."""
    groups = _group_tensor(suite)
    gimg = img[groups]  # (Q, 11, D)
    torch.manual_seed(0)
    t = torch.nn.Parameter(gimg[:, 0] + 0.01 * torch.randn_like(gimg[:, 0]))
    opt = torch.optim.Adam([t], lr=0.05)
    for _ in range(steps):
        logits = scale * torch.einsum("qd,qgd->qg", F.normalize(t, dim=-1), gimg)
        loss = F.cross_entropy(logits, torch.zeros(len(groups), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        sims = torch.einsum("qd,qgd->qg", F.normalize(t, dim=-1), gimg)
        margin = sims[:, 0] - sims[:, 1:].max(1).values
    return {"group_top1": group_top1_accuracy(sims, [0] * len(groups)), "median_margin": float(margin.median())}


class CompositionalReader(torch.nn.Module):
    """t = normalise(sum of one vector per affirmed (object, colour) + one vector per negated object)."""

    def __init__(self, dim: int):
        super().__init__()
        self.pairs = {p: i for i, p in enumerate((k, c) for k in OBJECTS for c in COLOURS)}
        self.kinds = {k: i for i, k in enumerate(OBJECTS)}
        self.affirm = torch.nn.Embedding(len(self.pairs), dim)
        self.negate = torch.nn.Embedding(len(self.kinds), dim)
        torch.nn.init.normal_(self.affirm.weight, std=0.1)
        torch.nn.init.zeros_(self.negate.weight)

    def forward(self, suite: Suite) -> torch.Tensor:
        aff = torch.tensor([[self.pairs[a] for a in q.affirmed] for q in suite.negated])
        neg = torch.tensor([self.kinds[q.absent] for q in suite.negated])
        return F.normalize(self.affirm(aff).sum(1) + self.negate(neg), dim=-1)


def _group_loss(t: torch.Tensor, img: torch.Tensor, suite: Suite, scale: float) -> torch.Tensor:
    """Target vs its own counterfactuals, plus target vs the whole gallery (the retrieval setting)."""
    gimg = img[_group_tensor(suite)]
    logits = scale * torch.einsum("qd,qgd->qg", t, gimg)
    group = F.cross_entropy(logits, torch.zeros(len(t), dtype=torch.long))
    pos = {g: k for k, g in enumerate(suite.negated_gallery)}
    gallery = F.cross_entropy(scale * t @ img[suite.negated_gallery].T,
                              torch.tensor([pos[q.target] for q in suite.negated]))
    return group + gallery


def retrieval_scores(t: torch.Tensor, img: torch.Tensor, suite: Suite) -> dict[str, float]:
    """Group top-1 and any-valid R@5 over the suite's negated gallery (the benchmark's rules)."""
    groups = _group_tensor(suite)
    sims_group = torch.einsum("qd,qgd->qg", t, img[groups])
    sims = t @ img[suite.negated_gallery].T
    return {"group_top1": group_top1_accuracy(sims_group, [0] * len(t)),
            "r5_any": recall_at_k_any(sims, negated_validity(suite), 5)}


def compositional_reader(train_img: torch.Tensor, train: Suite, evals: dict[str, tuple[torch.Tensor, Suite]],
                         scale: float, steps: int) -> dict:
    """Fit the compositional free reader on training groups; score it on other suites."""
    torch.manual_seed(0)
    reader = CompositionalReader(train_img.shape[1])
    opt = torch.optim.Adam(reader.parameters(), lr=0.05)
    for _ in range(steps):
        loss = _group_loss(reader(train), train_img, train, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = {"train": retrieval_scores(reader(train), train_img, train)}
        for name, (img, suite) in evals.items():
            out[name] = retrieval_scores(reader(suite), img, suite)
    return out


# ---------------------------------------------------------------------------------------------
# (c) real text towers


def target_ranks(t: torch.Tensor, img: torch.Tensor, suite: Suite) -> list[int]:
    """Rank of the target in its group (0 = first; 10 = below every counterfactual)."""
    sims = torch.einsum("qd,qgd->qg", t, img[_group_tensor(suite)])
    return (sims[:, 1:] >= sims[:, :1]).sum(1).tolist()


def rank_summary(ranks: Sequence[int]) -> dict:
    r = np.asarray(ranks)
    return {"mean_rank": float(r.mean()), "share_first": float((r == 0).mean()), "share_last": float((r == 10).mean()),
            "histogram": np.bincount(r, minlength=11).tolist()}


def training_wording(suite: Suite, seed: int) -> list[str]:
    """The negated queries of a training suite in FINE-TUNING wording (caption + a training cue frame),
    never the benchmark's "that does not include" frame."""
    rng = np.random.default_rng(seed)
    forms = [f for f in L.ABSENCE_FORMS if "{caption}" in f]
    out = []
    for q in suite.negated:
        caption = L.join([f"a {c} {k}" for k, c in q.affirmed])
        out.append(forms[int(rng.integers(len(forms)))].format(caption=caption, concept=q.absent))
    return out


def tower_capacity(folder: str | Path, train_img: torch.Tensor, train: Suite, bench_img: torch.Tensor, bench: Suite,
                   steps: int, lr: float, seed: int, pooled: bool = True) -> dict:
    """Fit the base text tower (all text layers, projection) directly to a text-to-image objective on
    training groups in fine-tuning wording; score training groups and the benchmark's groups (its own
    wording, never trained on). High train / low bench = wording transfer; low train = capacity or
    optimisation. `pooled`: each caption's softmax runs over every image of the batch (targets and
    their counterfactuals: retrieval and counterfactual negatives at once); else over its group only."""
    model, tokenizer, _ = _load(folder)
    for p in model.vision_model.parameters():
        p.requires_grad_(False)
    for p in model.visual_projection.parameters():
        p.requires_grad_(False)
    model.logit_scale.requires_grad_(False)
    texts = training_wording(train, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    scale = _scale(model)
    gimg = train_img[_group_tensor(train)]  # (Q, 11, D)
    group_size = gimg.shape[1]
    model.train()
    batch = 64
    for _ in range(steps):
        idx = torch.randperm(len(texts))[:batch]
        enc = tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt")
        t = F.normalize(text_features(model, enc.input_ids, enc.attention_mask), dim=-1)
        if pooled:
            logits = scale * t @ gimg[idx].reshape(-1, gimg.shape[-1]).T
            target = torch.arange(len(idx)) * group_size
        else:
            logits = scale * torch.einsum("qd,qgd->qg", t, gimg[idx])
            target = torch.zeros(len(idx), dtype=torch.long)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    t_train = encode_texts(model, tokenizer, texts)
    t_bench = encode_texts(model, tokenizer, [q.text for q in bench.negated])
    return {"steps": steps, "lr": lr, "pooled": pooled, "train": retrieval_scores(t_train, train_img, train),
            "bench": retrieval_scores(t_bench, bench_img, bench),
            "bench_ranks": rank_summary(target_ranks(t_bench, bench_img, bench))}


def encoder_report(folder: str | Path, bench: Suite, bench_img: torch.Tensor) -> dict:
    model, tokenizer, processor = _load(folder)
    metrics = evaluate(model, tokenizer, processor, bench)
    t = encode_texts(model, tokenizer, [q.text for q in bench.negated])
    return {"metrics": metrics, "ranks": rank_summary(target_ranks(t, bench_img, bench))}


# ---------------------------------------------------------------------------------------------


def diagnose(cfg: DiagnoseConfig) -> dict:
    if BENCH_SEED in (TRAIN_GROUP_SEED, HELDOUT_GROUP_SEED):
        raise ValueError("diagnosis groups must never be the benchmark's")
    start = time.perf_counter()
    model, _, processor = _load(cfg.base)
    scale = _scale(model)
    rng = np.random.default_rng(PROBE_SEED)
    probe_train = [sample_scene(rng, f"probe-{i}") for i in range(cfg.probe_scenes)]
    rng = np.random.default_rng(HELDOUT_PROBE_SEED)
    probe_test = [sample_scene(rng, f"probe-heldout-{i}") for i in range(cfg.heldout_scenes)]
    out: dict = {"config": asdict(cfg)}
    out["presence_probe"] = presence_probe(scene_embeddings(model, processor, probe_train), probe_train,
                                           scene_embeddings(model, processor, probe_test), probe_test)
    train = build_suite(seed=TRAIN_GROUP_SEED, size=cfg.train_groups)
    heldout = build_suite(seed=HELDOUT_GROUP_SEED, size=cfg.heldout_groups)
    bench = build_suite(size=cfg.bench_size)

    def suite_img(suite: Suite) -> torch.Tensor:  # only the negated-retrieval scenes need pixels
        img = torch.zeros(len(suite.scenes), model.config.projection_dim)
        img[suite.negated_gallery] = scene_embeddings(model, processor, [suite.scenes[g] for g in suite.negated_gallery])
        return img

    train_img, heldout_img, bench_img = suite_img(train), suite_img(heldout), suite_img(bench)
    # optimised on training-world groups only (never on benchmark items)
    out["free_embedding"] = {"train": free_embedding_reachability(train_img, train, scale, cfg.free_steps)}
    out["compositional_reader"] = compositional_reader(
        train_img, train, {"heldout": (heldout_img, heldout), "bench": (bench_img, bench)}, scale, cfg.free_steps)
    out["base"] = encoder_report(cfg.base, bench, bench_img)
    if cfg.model:
        out["finetuned"] = encoder_report(cfg.model, bench, bench_img)
    out["tower_capacity"] = tower_capacity(cfg.base, train_img, train, bench_img, bench, cfg.tower_steps,
                                           cfg.tower_lr, cfg.seed)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flat(v, key + "."))
        else:
            flat[key] = v
    return flat


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--base", default=str(BASE_DIR))
    p.add_argument("--model", default=None, help="a fine-tuned CLIPModel folder to diagnose beside the base")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--tower-steps", type=int, default=DiagnoseConfig.tower_steps)
    p.add_argument("--tower-lr", type=float, default=DiagnoseConfig.tower_lr)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = p.parse_args(argv)
    cfg = DiagnoseConfig(base=args.base, model=args.model, tower_steps=args.tower_steps, tower_lr=args.tower_lr)
    if args.quick:
        cfg = DiagnoseConfig(base=args.base, model=args.model, probe_scenes=400, heldout_scenes=200, train_groups=60,
                             heldout_groups=30, bench_size=40, free_steps=100, tower_steps=10, tower_lr=args.tower_lr)
    res = diagnose(cfg)
    for k, v in _flat(res).items():
        if not isinstance(v, (list, dict)) and not k.startswith("config.") and "per_object" not in k:
            print(f"{k:60s} {v:.4g}" if isinstance(v, float) else f"{k:60s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
