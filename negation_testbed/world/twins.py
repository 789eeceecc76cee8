"""Benchmark twins on the world, scored with the shared rules of `negation_encoder.eval`.

Fixed seed and sizes (>= 500 items each). Wordings come from `language` and never from the
fine-tuning rewrites; the held-out pair uses cue words that never occur in fine-tuning data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from negation_encoder.encoding import encode_images, encode_texts
from negation_encoder.eval import (
    existence_accuracy,
    group_top1_accuracy,
    mcq_scores,
    pairwise_accuracy,
    recall_at_k_any,
    recall_at_k_from_sims,
    zeroshot_accuracy,
)
from negation_encoder.image_cache import cache_fingerprint
from negation_encoder.split_scorer import SplitScorer

from . import language as L
from .scenes import CELLS, COLOURS, OBJECTS, THEMES, Scene, SceneObject, object_scene, render, sample_scene

METRIC_KEYS = ("existence", "mcq", "mcq_positive", "mcq_negative", "mcq_hybrid", "pairwise",
               "retrieval_negated_r5", "retrieval_negated_group_top1", "retrieval_plain_r5",
               "heldout_existence", "heldout_mcq", "zeroshot")
METRIC_LABELS = {
    "existence": "existence (VALSE-style)", "mcq": "MCQ (NegBench wording)", "mcq_positive": "  MCQ positive",
    "mcq_negative": "  MCQ negative", "mcq_hybrid": "  MCQ hybrid", "pairwise": "pairwise referring",
    "retrieval_negated_r5": "negated retrieval R@5", "retrieval_negated_group_top1": "negated group top-1",
    "retrieval_plain_r5": "plain retrieval R@5", "heldout_existence": "held-out existence",
    "heldout_mcq": "held-out MCQ", "zeroshot": "zero-shot top-1",
}
DEFAULT_SIZE = 500
NEGATED_DISTRACTORS = 10  # per negated query: images with the same objects plus the negated one
BENCH_SEED = 12345


@dataclass(frozen=True)
class NegatedQuery:
    """A negated retrieval query with what it asserts, so validity is read from scene annotations.

    `affirmed` holds the (kind, colour) of every object the query mentions; `absent` is the negated
    kind; `group` is the target (first) and its counterfactuals, which hold the negated object.
    """

    text: str
    affirmed: tuple[tuple[str, str], ...]
    absent: str
    group: tuple[int, ...]

    @property
    def target(self) -> int:
        return self.group[0]


def satisfies(scene: Scene, affirmed: tuple[tuple[str, str], ...], absent: str) -> bool:
    """True iff every affirmed object is there in its colour and the negated kind is not."""
    have = {(o.kind, o.colour) for o in scene.objects}
    return all(a in have for a in affirmed) and not scene.has(absent)


def _absent_plausible(scene: Scene, rng: np.random.Generator) -> str:
    pool = [o for o in THEMES[scene.theme] if not scene.has(o)] or [o for o in OBJECTS if not scene.has(o)]
    return str(rng.choice(pool))


@dataclass
class Suite:
    scenes: list[Scene] = field(default_factory=list)
    existence: list[tuple[int, str, str]] = field(default_factory=list)  # (scene, caption, foil)
    heldout_existence: list[tuple[int, str, str]] = field(default_factory=list)
    mcq: list[tuple[int, list[str], int, str, list[str]]] = field(default_factory=list)
    heldout_mcq: list[tuple[int, list[str], int, str, list[str]]] = field(default_factory=list)
    pairwise: list[tuple[str, list[int], int]] = field(default_factory=list)  # (phrase, candidates, ref)
    negated_queries: list[tuple[str, int]] = field(default_factory=list)  # (query, target scene)
    negated: list[NegatedQuery] = field(default_factory=list)  # the same queries, with annotations
    negated_gallery: list[int] = field(default_factory=list)
    plain_queries: list[tuple[str, int]] = field(default_factory=list)
    plain_gallery: list[int] = field(default_factory=list)
    zeroshot: list[tuple[int, int]] = field(default_factory=list)  # (scene, class index)
    _image_cache: dict = field(default_factory=dict, repr=False)

    def add(self, scene: Scene) -> int:
        self.scenes.append(scene)
        return len(self.scenes) - 1

    def images(self) -> list[Image.Image]:
        return [Image.fromarray(render(s)[0]) for s in self.scenes]


def _mcq_item(scene: Scene, rng: np.random.Generator, wording) -> tuple[list[str], int, str, list[str]]:
    a, b = [o.kind for o in rng.permutation(np.array(scene.objects, dtype=object))[:2]]
    n = _absent_plausible(scene, rng)
    t = wording(a, b, n)
    template = str(rng.choice(["positive", "negative", "hybrid"]))
    options = [(t[template], template), (t["wrong_hybrid"], "hybrid"), (t["wrong_positive"], "positive"),
               (t["wrong_negative"], "negative")]
    order = rng.permutation(4)
    texts = [options[i][0] for i in order]
    kinds = [options[i][1] for i in order]
    return texts, int(np.where(order == 0)[0][0]), template, kinds


def build_suite(seed: int = BENCH_SEED, size: int = DEFAULT_SIZE) -> Suite:
    """All benchmark items; deterministic for a given (seed, size)."""
    rng = np.random.default_rng(seed)
    s = Suite()
    for i in range(size):
        scene = sample_scene(rng, f"exist-{i}")
        idx = s.add(scene)
        present = rng.random() < 0.5
        kind = scene.objects[int(rng.integers(len(scene.objects)))].kind if present else _absent_plausible(scene, rng)
        s.existence.append((idx, *L.existence_pair(kind, present)))
        present = rng.random() < 0.5
        kind = scene.objects[int(rng.integers(len(scene.objects)))].kind if present else _absent_plausible(scene, rng)
        s.heldout_existence.append((idx, *L.heldout_existence_pair(kind, present, rng)))
        texts, correct, template, kinds = _mcq_item(scene, rng, L.negbench_mcq)
        s.mcq.append((idx, texts, correct, template, kinds))
        texts, correct, template, kinds = _mcq_item(scene, rng, L.heldout_mcq)
        s.heldout_mcq.append((idx, texts, correct, template, kinds))
    colours = list(COLOURS)
    for i in range(size):
        kind = str(rng.choice(OBJECTS))
        c1, c2 = rng.choice(colours, size=2, replace=False)
        objs = [SceneObject(kind, str(c), str(rng.choice(["small", "large"])), str(rng.choice(CELLS))) for c in (c1, c2)]
        cands = [s.add(object_scene(rng, f"pair-{i}-{j}", o)) for j, o in enumerate(objs)]
        phrase = L.REFERRING_FORMS[i % len(L.REFERRING_FORMS)].format(kind=kind, value=c2)
        if rng.random() < 0.5:
            cands = cands[::-1]
        ref = next(k for k in cands if s.scenes[k].objects[0].colour == str(c1))
        s.pairwise.append((phrase, cands, ref))
    for i in range(size):
        theme = str(rng.choice(list(THEMES)))
        a, b, n = rng.choice(THEMES[theme], size=3, replace=False)
        c = rng.choice([o for o in OBJECTS if o not in (a, b, n)])
        ca, cb = rng.choice(colours, size=2)
        cells = list(CELLS)
        group = []
        for j in range(1 + NEGATED_DISTRACTORS):
            rng.shuffle(cells)
            objs = [SceneObject(str(a), str(ca), str(rng.choice(["small", "large"])), cells[0]),
                    SceneObject(str(b), str(cb), str(rng.choice(["small", "large"])), cells[1])]
            # the target has a third, unmentioned object; each distractor has the negated one instead,
            # so a negation-blind model (which reads "not ... a plate" as "a plate") prefers distractors
            third = str(c) if j == 0 else str(n)
            objs.append(SceneObject(third, str(rng.choice(colours)), str(rng.choice(["small", "large"])), cells[2]))
            group.append(s.add(Scene(f"negret-{i}-{j}", theme, objs, seed=int(rng.integers(2**31 - 1)))))
        s.negated_gallery += group
        shown = s.scenes[group[0]].objects[:2]
        text = L.negated_retrieval_query(shown, str(n))
        s.negated_queries.append((text, group[0]))
        s.negated.append(NegatedQuery(text, tuple((o.kind, o.colour) for o in shown), str(n), tuple(group)))
    for i in range(size):
        scene = sample_scene(rng, f"plain-{i}", n_objects=(2, 3))
        idx = s.add(scene)
        s.plain_gallery.append(idx)
        s.plain_queries.append((L.full_caption(scene), idx))
    per_class = max(1, -(-size // len(OBJECTS)))
    for ci, kind in enumerate(OBJECTS):
        for j in range(per_class):
            obj = SceneObject(kind, str(rng.choice(colours)), str(rng.choice(["small", "large"])), str(rng.choice(CELLS)))
            s.zeroshot.append((s.add(object_scene(rng, f"zs-{kind}-{j}", obj)), ci))
    return s


def image_embeddings(suite: Suite, model, image_processor) -> torch.Tensor:
    """Every suite image embedded once per vision tower (the fine-tuned model shares the base's)."""
    key = cache_fingerprint(model, image_processor)
    if key not in suite._image_cache:
        suite._image_cache[key] = encode_images(model, image_processor, suite.images())
    return suite._image_cache[key]


def negated_validity(suite: Suite) -> torch.Tensor:
    """(queries, negated gallery) mask: which gallery images satisfy each negated query."""
    return torch.tensor([[satisfies(suite.scenes[g], q.affirmed, q.absent) for g in suite.negated_gallery]
                         for q in suite.negated], dtype=torch.bool)


def negated_retrieval_scores(sims: torch.Tensor, suite: Suite) -> dict[str, float]:
    """`retrieval_negated_r5` (a hit: any top-5 gallery image satisfies the query) and
    `retrieval_negated_group_top1` (the target beats its own counterfactuals), from (queries, suite
    images) scores of the negated queries (in `suite.negated` order) against every suite image."""
    gallery = sims[:, suite.negated_gallery]
    group_sims = torch.stack([sims[i, list(q.group)] for i, q in enumerate(suite.negated)])
    return {"retrieval_negated_r5": recall_at_k_any(gallery, negated_validity(suite), 5),
            "retrieval_negated_group_top1": group_top1_accuracy(group_sims, [0] * len(suite.negated))}


class _PlainScorer:
    """Cosines: what every benchmark does with a plain encoder."""

    def __init__(self, encode):
        self.encode = encode

    def embed(self, texts):
        return self.encode(texts)

    def paired(self, image, emb):
        return (image * emb).sum(-1)

    def matrix(self, image, emb):  # (images, texts)
        return image @ emb.T

    @staticmethod
    def rows(emb, idx):
        return emb[idx]


class _SplitScorer(_PlainScorer):
    """The training-free split reader (`negation_encoder.split_scorer.SplitScorer`)."""

    def __init__(self, encode, scorer: SplitScorer, splitter=None):
        super().__init__(encode)
        self.scorer, self.splitter = scorer, splitter

    def embed(self, texts):
        return self.scorer.encode(texts, self.encode, self.splitter)

    def paired(self, image, emb):
        return self.scorer.paired(image, emb)

    def matrix(self, image, emb):
        return self.scorer.similarity(image, emb)

    @staticmethod
    def rows(emb, idx):
        return emb.index(idx)


@torch.no_grad()
def evaluate(model, tokenizer, image_processor, suite: Suite, return_details: bool = False,
             scorer: SplitScorer | None = None, splitter=None):
    """METRICS of docs/design.md (fractions in [0, 1]) for a CLIPModel on the suite. With a split `scorer`,
    every caption is scored by the split reader (affirmative part minus w times the negated concepts;
    plain captions as plain CLIP) instead of one cosine: the `*_split` columns of the demo."""
    was_training = model.training
    model.eval()
    img = image_embeddings(suite, model, image_processor)

    def enc(texts):
        return encode_texts(model, tokenizer, texts)

    sc = _PlainScorer(enc) if scorer is None else _SplitScorer(enc, scorer, splitter)
    out: dict[str, float] = {}
    details: dict = {}
    for name, items in (("existence", suite.existence), ("heldout_existence", suite.heldout_existence)):
        t = sc.embed([c for _, c, _ in items] + [f for _, _, f in items])
        n = len(items)
        im = img[[i for i, _, _ in items]]
        out[name] = existence_accuracy(sc.paired(im, sc.rows(t, list(range(n)))),
                                       sc.paired(im, sc.rows(t, list(range(n, 2 * n)))))
    for name, items in (("mcq", suite.mcq), ("heldout_mcq", suite.heldout_mcq)):
        t = sc.embed([x for _, texts, _, _, _ in items for x in texts])
        im = img[[i for i, *_ in items]].repeat_interleave(4, dim=0)
        sims = sc.paired(im, t).view(len(items), 4)
        scores = mcq_scores(sims, [c for _, _, c, _, _ in items], [tt for _, _, _, tt, _ in items],
                            [k for *_, k in items])
        if name == "mcq":
            out.update({k: v for k, v in scores.items() if k in METRIC_KEYS})
            details["mcq_wrong_picked"] = {k: v for k, v in scores.items() if "wrong" in k}
            details["mcq_pred"] = sims.argmax(1).tolist()
        else:
            out["heldout_mcq"] = scores["mcq"]
    t = sc.embed([p for p, _, _ in suite.pairwise])
    sims = [sc.matrix(img[c], sc.rows(t, [i]))[:, 0] for i, (_, c, _) in enumerate(suite.pairwise)]
    out["pairwise"] = pairwise_accuracy(sims, [c.index(r) for _, c, r in suite.pairwise])
    out.update(negated_retrieval_scores(sc.matrix(img, sc.embed([q.text for q in suite.negated])).T, suite))
    gallery = img[suite.plain_gallery]
    pos = {g: k for k, g in enumerate(suite.plain_gallery)}
    plain = sc.matrix(gallery, sc.embed([q for q, _ in suite.plain_queries])).T
    out["retrieval_plain_r5"] = recall_at_k_from_sims(plain, [pos[t] for _, t in suite.plain_queries], (5,))[5]
    cls = enc([tmpl.format(k) for k in OBJECTS for tmpl in L.ZEROSHOT_TEMPLATES]).view(len(OBJECTS), len(L.ZEROSHOT_TEMPLATES), -1)
    out["zeroshot"] = zeroshot_accuracy(img[[i for i, _ in suite.zeroshot]], cls, [c for _, c in suite.zeroshot])
    model.train(was_training)
    metrics = {k: float(out[k]) for k in METRIC_KEYS}
    return (metrics, details) if return_details else metrics
