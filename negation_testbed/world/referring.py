"""The world's referring sets: scenes with two objects of one kind in different colours, and a phrase that
picks one, for `negenc testbed seg-compare`, the segmenter's split-route fit and seg_loss's training records.

Why these sets: the segmenter was trained with the *base* encoder and affirmative phrases only, so any gain
of a swapped encoder on negated expressions ("the cup that is not red") is transfer, not training. Each
negated set has an affirmative control on the same scenes and targets ("the blue cup"): what the swap must
not break.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import language as L
from .scenes import OBJECTS, object_masks, pair_scene

CONTROL_REFERRING_FORMS = ("the {colour} {kind}",)  # seg-compare's affirmative control (evaluation wording)


def referring_pairs(n: int, seed: int, forms: tuple[str, ...] = L.REFERRING_FORMS, prefix: str = "ref"):
    """(scene, target index, other index, negated form) for scenes with two objects of one kind in different
    colours: the draw behind every referring set, so a diagnosis that needs the objects (not the text) sees
    the very scenes `referring_samples` makes for the same seed and forms."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        scene, a, b = pair_scene(rng, f"{prefix}-{i}", kind=OBJECTS[i % len(OBJECTS)])
        target, other = (a, b) if rng.random() < 0.5 else (b, a)
        yield scene, target, other, forms[int(rng.integers(len(forms)))]


def affirmative_phrase(obj, i: int, forms: tuple[str, ...]) -> str:
    """Sample `i`'s affirmative expression of `obj` ("the blue cup"): the forms taken in turn."""
    return forms[i % len(forms)].format(colour=obj.colour, kind=obj.kind, cell=obj.cell)


def referring_samples(n: int, seed: int, negated: bool, forms: tuple[str, ...] = L.REFERRING_FORMS,
                      prefix: str = "ref", affirm_forms: tuple[str, ...] = CONTROL_REFERRING_FORMS):
    """(image, text, target mask, other mask) for scenes with two objects of one kind in different colours;
    the phrase picks one. Negated: a referring form ("the cup that is not red") naming the *other*
    object's colour; control: "the blue cup". The same seed gives the same scenes and targets for both."""
    for i, (scene, target, other, form) in enumerate(referring_pairs(n, seed, forms, prefix)):
        t, o = scene.objects[target], scene.objects[other]
        text = form.format(kind=t.kind, value=o.colour) if negated else affirmative_phrase(t, i, affirm_forms)
        image, masks = object_masks(scene)
        yield image, text, masks[target], masks[other]


def write_referring_set(out: Path, n: int, seed: int, negated: bool, forms: tuple[str, ...] = L.REFERRING_FORMS
                        ) -> Path:
    """A JSONL set for `eval_seg` (`{"id", "image", "text", "mask", "other_mask"}`) of `referring_samples`
    with the EVALUATION forms (`language.REFERRING_FORMS`; seg-compare's `--prompts heldout` passes
    `grammar.HELDOUT_REFERRING_FORMS`); negated and control sets of one seed pair sample by sample."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, text, target, other) in enumerate(referring_samples(n, seed, negated, forms)):
        Image.fromarray(image).save(out / f"{i:04d}.png")
        Image.fromarray(target.astype(np.uint8) * 255).save(out / f"{i:04d}_mask.png")
        Image.fromarray(other.astype(np.uint8) * 255).save(out / f"{i:04d}_other.png")
        lines.append(json.dumps({"id": f"{i:04d}", "image": f"{i:04d}.png", "text": text, "mask": f"{i:04d}_mask.png",
                                 "other_mask": f"{i:04d}_other.png"}))
    path = out / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
