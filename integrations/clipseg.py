"""Put a negation-aware text tower into transformers' CLIPSeg (vision and decoder untouched), and the
training-free route for segmentation (`segment(..., route="split")`).

The released CLIPSeg (CIDAS/clipseg-rd64-refined) is built on a ViT-B/16 CLIP: text width 512,
projection 512. `encoder` may be a `CLIPModel` or a `CLIPTextModelWithProjection` of that size, or a
folder / Hub id holding one (`load_clipseg_text_encoder`, which checks that it is a CLIP text tower first).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from negation_encoder.errors import IncompatibleModelError, InputError


def _text_parts(encoder):
    if hasattr(encoder, "text_model") and hasattr(encoder, "text_projection"):
        return encoder.text_model, encoder.text_projection
    raise IncompatibleModelError(f"encoder is of type {type(encoder).__name__}, but should be CLIPModel or "
                    "CLIPTextModelWithProjection (a text tower with its projection)")


def load_clipseg_text_encoder(source: str, flag: str = ""):
    """The text tower and projection CLIPSeg reads, from a CLIPModel or CLIPTextModelWithProjection folder,
    a negation-encoder checkpoint folder, or a Hub repo of one: a CLIPModel, else a
    CLIPTextModelWithProjection. Anything that is not a CLIP text tower with its projection (a BERT, a T5,
    a CLIPTextModel alone) is one IncompatibleModelError naming it (`flag` prefixes the message)."""
    from transformers import CLIPModel, CLIPTextModelWithProjection

    from negation_encoder.checkpoint.sources import text_tower

    from .diffusion import _quiet_from_pretrained

    where = text_tower(source, "clipseg", flag)
    cls = CLIPModel if where.kind == "clip" else CLIPTextModelWithProjection
    return _quiet_from_pretrained(cls, where.path, where.subfolder)


def swap_clipseg_text_encoder(model, encoder):
    """Copy the text transformer and text projection of `encoder` (a model, or a folder / Hub id for
    `load_clipseg_text_encoder`) into `model` (in place; returned).

    Every shape is checked first; a mismatch raises one IncompatibleModelError listing each differing tensor.
    """
    if isinstance(encoder, (str, Path)):
        encoder = load_clipseg_text_encoder(str(encoder))
    text_model, projection = _text_parts(encoder)
    src = {f"text_model.{k}": v for k, v in text_model.state_dict().items()}
    src.update({f"text_projection.{k}": v for k, v in projection.state_dict().items()})
    dst_model = model.clip
    dst = {k: v for k, v in dst_model.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    mismatched = [f"{k}: CLIPSeg {tuple(dst[k].shape)} vs encoder {tuple(src[k].shape)}"
                  for k in sorted(set(dst) & set(src)) if dst[k].shape != src[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"MISSING {k}" for k in missing[:5]] + [f"UNEXPECTED {k}" for k in unexpected[:5]] + \
                [f"MISMATCH {m}" for m in mismatched[:5]]
        raise IncompatibleModelError(
            f"cannot load a text tower (width {text_model.config.hidden_size}, projection "
            f"{projection.out_features}) into CLIPSeg (width {model.config.text_config.hidden_size}, projection "
            f"{model.config.projection_dim}): " + "; ".join(lines))
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(v.to(dtype=dst[k].dtype, device=dst[k].device))
    return model


# ------------------------------------------------------------------------------------------------
# the training-free route for segmentation

SPLIT_ROUTE_FILE = "negation_split_route.json"
ROUTES = ("plain", "split")


@dataclass
class SplitRoute:
    """How CLIPSeg reads "the cup that is not red" without a new encoder: segment the affirmative part
    ("the cup") and each negated concept ("the red cup"), then keep what the first finds and the second
    does not:

        p = p_aff * (1 - p_neg / max(p_neg)) ** weight, rescaled so its peak is p_aff's peak

    Why the rescaling: "the cup" spreads its probability over both cups; once the excluded one is
    removed, the referred one is what the model meant, at the confidence it had for the phrase.
    `weight` is fitted on training scenes (`fit_on`), never on evaluation sets, and saved beside the
    CLIPSeg weights (`negation_split_route.json`). A text that negates nothing is segmented as is.
    """

    weight: float = 1.0
    concept_template: str = "the {}"
    fit: dict = field(default_factory=dict)

    def combine(self, p_aff: torch.Tensor, p_neg: torch.Tensor) -> torch.Tensor:
        """(N, H, W) probabilities of the affirmative part and of the strongest negated concept."""
        peak_neg = p_neg.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
        kept = p_aff * (1 - p_neg / peak_neg).clamp_min(0) ** self.weight
        scale = p_aff.flatten(1).amax(1) / kept.flatten(1).amax(1).clamp_min(1e-12)
        return kept * scale[:, None, None]

    def save(self, folder) -> Path:
        path = Path(folder) / SPLIT_ROUTE_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder) -> SplitRoute:
        path = Path(folder) / SPLIT_ROUTE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {SPLIT_ROUTE_FILE} (a split route fitted on training scenes); "
                                    "fit one with SplitRoute.fit_on and save it beside the model")
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def fit_on(cls, p_aff: torch.Tensor, p_neg: torch.Tensor, masks: torch.Tensor,
            grid: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0), threshold: float = 0.3,
            concept_template: str = "the {}", **info) -> SplitRoute:
        """The weight whose combined maps give the best mean per-sample IoU at `threshold` against the
        referred objects' `masks` (N, H, W), on TRAINING samples; ties go to the smaller weight."""
        scores = {}
        gt = masks.bool()
        for w in grid:
            pred = cls(w).combine(p_aff, p_neg) > threshold
            inter = (pred & gt).flatten(1).sum(1).float()
            union = (pred | gt).flatten(1).sum(1).float()
            scores[w] = float((inter / (1 + union)).mean())
        best = max(grid, key=lambda w: (scores[w], -w))
        return cls(best, concept_template, fit={"samples": len(masks), "threshold": threshold,
                                                "iou_by_weight": {str(k): round(v, 4) for k, v in scores.items()},
                                                **info})


@torch.no_grad()
def clipseg_probabilities(model, processor, images, texts) -> torch.Tensor:
    """(N, H, W) sigmoid probabilities of CLIPSeg for image i and text i (one batch, padded together)."""
    param = next(model.parameters())
    max_len = min(getattr(processor.tokenizer, "model_max_length", 77), model.config.text_config.max_position_embeddings)
    enc = processor(text=list(texts), images=list(images), padding=True, truncation=True, max_length=max_len,
                    return_tensors="pt")
    enc = {k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device) for k, v in enc.items()}
    logits = model(**enc).logits
    return torch.sigmoid(logits.reshape(len(texts), *logits.shape[-2:]).float()).cpu()


def segment(model, processor, images, texts, route: str = "plain", split_route: SplitRoute | None = None,
            splitter=None) -> torch.Tensor:
    """CLIPSeg probabilities (N, H, W) for referring texts, read plainly or through the split route.

    `route="split"` reads each negated text as its affirmative part minus its negated concepts
    (`SplitRoute`); the route's weight comes from `split_route`, else from the model's folder
    (`negation_split_route.json`). Works the same with the original or a swapped text tower.
    """
    from negation_encoder.splitting import split_negation

    if route not in ROUTES:
        raise InputError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    if len(images) != len(texts):
        raise InputError(f"one image per text: {len(images)} images, {len(texts)} texts")
    if route == "plain":
        return clipseg_probabilities(model, processor, images, texts)
    if split_route is None:
        split_route = SplitRoute.load(model.config._name_or_path)
    split = splitter.split if splitter is not None else split_negation
    parts = [split(t) for t in texts]
    out = clipseg_probabilities(model, processor, images, [s.affirmative if s.has_negation else t
                                                           for s, t in zip(parts, texts, strict=True)])
    rows = [i for i, s in enumerate(parts) if s.has_negation]
    if not rows:
        return out
    # the strongest negated concept per pixel, for texts that negate several
    concept_rows = [(i, c) for i in rows for c in parts[i].negated]
    pn = clipseg_probabilities(model, processor, [images[i] for i, _ in concept_rows],
                               [split_route.concept_template.format(c) for _, c in concept_rows])
    neg = torch.zeros_like(out[rows])
    where = {i: k for k, i in enumerate(rows)}
    for (i, _), p in zip(concept_rows, pn, strict=True):
        neg[where[i]] = torch.maximum(neg[where[i]], p)
    out[rows] = split_route.combine(out[rows], neg)
    return out
