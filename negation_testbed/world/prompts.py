"""The world's text-to-image prompt sets: negated prompts and their affirmative controls, in eval_t2i's
`negation_v1` format, for `negenc testbed t2i-compare`.

Why these prompts: the generator and the judge were trained with the *base* encoder and affirmative text
only, so any gain of a swapped encoder on negated prompts is transfer, not training. Each negated prompt
has an affirmative control on the same subject (what the swap must not break). Subjects and negated
objects share a theme ("a kitchen with a red cup and no fork"), so the negated object is one the
generator is likely to draw, as in COCO-based prompt sets.
"""

from __future__ import annotations

import numpy as np

from .grammar import HELDOUT_CONSTRUCTIONS, HELDOUT_CUE_CONSTRUCTIONS, VALIDATION_CONSTRUCTIONS
from .scenes import COLOURS, OBJECT_THEME, OBJECTS, THEME_PLACE, THEMES

T2I_FORMS = (  # (negated prompt, cue, affirmative control): the cue words the world's splitter reads
    ("a {place} with a {colour} {kind} and no {neg}", "no", "a {place} with a {colour} {kind}"),
    ("a {colour} {kind} in a {place} without a {neg}", "without", "a {colour} {kind} in a {place}"),
    ("a {place} with a {colour} {kind} but not a {neg}", "not", "a {place} with a {colour} {kind}"),
)
# Validation prompts (`t2i-compare --prompts validation`): the same cues in frames that neither train
# (`language.TRAIN_T2I_FORMS`) nor are scored (`T2I_FORMS`), drawn with their own seed, so a setting of the
# generator side (sampling, a route's options) can be chosen on prompts the evaluation never scores and the
# fine-tuning never read (tests/test_transfer.py checks both).
VALIDATION_T2I_FORMS = (
    ("{place} scene showing a {colour} {kind} and no {neg}", "no", "{place} scene showing a {colour} {kind}"),
    ("this image shows a {colour} {kind} at the {place}, without a {neg}", "without",
     "this image shows a {colour} {kind} at the {place}"),
    ("one {colour} {kind} at the {place} and not a {neg}", "not", "one {colour} {kind} at the {place}"),
)
VALIDATION_PROMPT_SEED = 8_675_309
# Held-out prompts (`--prompts heldout`, `--prompts heldout-cues`): the constructions no fine-tuning text
# uses (`grammar.HELDOUT_CONSTRUCTIONS`: new constructions of the trained cues; `grammar.HELDOUT_CUE_CONSTRUCTIONS`:
# cue words never trained), drawn with their own seed, reported once per change and never used to choose.
HELDOUT_PROMPT_SEED = 31_415
# Validation constructions (`--prompts validation-constructions`): unseen constructions neither trained nor held
# out (`grammar.VALIDATION_CONSTRUCTIONS`), drawn like the held-out sets with their own seed: what a choice of
# training text is made on, so the held-out sets stay unread until it is made.
VALIDATION_CONSTRUCTION_SEED = 27_182
CONSTRUCTION_SETS = {"validation-constructions": (VALIDATION_CONSTRUCTIONS, VALIDATION_CONSTRUCTION_SEED, "vc"),
                     "heldout": (HELDOUT_CONSTRUCTIONS, HELDOUT_PROMPT_SEED, "ho"),
                     "heldout-cues": (HELDOUT_CUE_CONSTRUCTIONS, HELDOUT_PROMPT_SEED + 1, "hoc")}
PROMPT_SETS = ("evaluation", "validation", *CONSTRUCTION_SETS)


def world_prompt_sets(forms_per_kind: int = 3, seed: int = 0, prompts: str = "evaluation"
                     ) -> tuple[list[dict], list[dict]]:
    """(negated, control) entries in eval_t2i's `negation_v1` format: one negated prompt per kind and
    form (the negated object from the subject's theme), and its affirmative twin (no negated concept).
    `prompts="validation"`: `VALIDATION_T2I_FORMS` drawn with `VALIDATION_PROMPT_SEED` (`seed` ignored),
    ids prefixed "val_". `prompts="heldout"` / `"heldout-cues"`: the held-out constructions
    (`CONSTRUCTION_SETS`) drawn with `HELDOUT_PROMPT_SEED`, the k-th prompt of a kind in construction
    (kind index + k) mod n, so every construction gets its share whatever `forms_per_kind`; each entry
    names its `construction`, ids prefixed "ho_" / "hoc_". `prompts="validation-constructions"`: likewise from
    `grammar.VALIDATION_CONSTRUCTIONS` with `VALIDATION_CONSTRUCTION_SEED`, ids prefixed "vc_"."""
    if prompts not in PROMPT_SETS:
        raise ValueError(f"prompts must be one of {', '.join(PROMPT_SETS)}, got {prompts!r}")
    if prompts in CONSTRUCTION_SETS:
        return _construction_prompt_sets(forms_per_kind, *CONSTRUCTION_SETS[prompts])
    validation = prompts == "validation"
    forms = VALIDATION_T2I_FORMS if validation else T2I_FORMS
    rng = np.random.default_rng(VALIDATION_PROMPT_SEED if validation else seed)
    negated, control = [], []
    for kind in OBJECTS:
        theme = OBJECT_THEME[kind]
        for f, (form, cue, affirm) in enumerate(forms[:forms_per_kind]):
            neg = str(rng.choice([k for k in THEMES[theme] if k != kind]))
            colour = str(rng.choice(list(COLOURS)))
            slots = {"place": THEME_PLACE[theme], "colour": colour, "kind": kind, "neg": neg}
            pid = f"val_{kind}_{f}" if validation else f"{kind}_{f}"
            negated.append(_negated_entry(pid, form.format(**slots), kind, neg, cue))
            control.append(_control_entry(pid, affirm.format(**slots), kind))
    return negated, control


def _negated_entry(pid: str, prompt: str, kind: str, neg: str, cue: str, **extra) -> dict:
    return {"id": pid, "prompt": prompt, "subject": kind, "negated_concepts": [neg], "negation_type": "object",
            "cue": cue, "questions": [f"Is there a {kind}?", f"Is there a {neg}?"], **extra}


def _control_entry(pid: str, prompt: str, kind: str, **extra) -> dict:
    return {"id": f"{pid}_control", "prompt": prompt, "subject": kind, "negated_concepts": [],
            "negation_type": "none", "cue": "none", "questions": [f"Is there a {kind}?"], **extra}


def _construction_prompt_sets(forms_per_kind: int, constructions: tuple, seed: int, prefix: str
                              ) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    negated, control = [], []
    for i, kind in enumerate(OBJECTS):
        theme = OBJECT_THEME[kind]
        for f in range(forms_per_kind):
            c = constructions[(i + f) % len(constructions)]
            neg = str(rng.choice([k for k in THEMES[theme] if k != kind]))
            colour = str(rng.choice(list(COLOURS)))
            text, _, affirm = c.fill(subject=f"a {colour} {kind}", place=THEME_PLACE[theme], neg=neg)
            pid = f"{prefix}_{kind}_{f}"
            negated.append(_negated_entry(pid, text, kind, neg, c.cue, construction=c.name))
            control.append(_control_entry(pid, affirm, kind, construction=c.name))
    return negated, control
