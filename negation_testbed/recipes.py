"""Named fine-tuning recipes for the testbed: data sources plus TrainConfig overrides.

`Recipe.to_config` is the one place a recipe becomes a `TrainConfig` (the demo and `testbed compare`
both go through it), and it records the recipe's name in the config, hence in the model card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from negation_encoder.training.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    sources: tuple[str, ...]
    overrides: dict = field(default_factory=dict)
    compositional: bool = False  # generate P1's compositional foils and their true twins for this recipe
    seg: bool = False  # trains through the world's frozen CLIPSeg (seg_loss): needs referring records

    @property
    def data_variant(self) -> str:
        """Recipes that need differently generated data get their own data folder name."""
        return "data-compositional" if self.compositional else "data"

    def to_config(self, *, base: str | Path, data: Mapping[str, str | Path], images: str | Path, out: str | Path,
                  seed: int = 0, steps: int | None = None, cache_dir: str | Path = "",
                  seg_data: str | Path | None = None, seg_model: str | Path | None = None) -> TrainConfig:
        """The TrainConfig of this recipe on generated data (`data` maps each source to its .jsonl; a `seg`
        recipe also needs `seg_data`, ReferringRecords, and the frozen `seg_model` it trains through).
        `steps` shortens (or lengthens) the run, clipping warmup and checkpoint cadence to it."""
        missing = [s for s in self.sources if s not in data]
        if missing:
            raise ValueError(f"recipe {self.name!r} needs data from {', '.join(missing)}")
        overrides = dict(self.overrides, seed=seed, recipe=self.name)
        if self.seg:
            if seg_data is None or seg_model is None:
                raise ValueError(f"recipe {self.name!r} trains through CLIPSeg: it needs seg_data and seg_model")
            overrides.update(seg_data=[str(seg_data)], seg_model=str(seg_model))
        if steps is not None:
            overrides.update(steps=steps, warmup_steps=min(overrides.get("warmup_steps", 0), steps),
                             save_every=max(1, min(overrides.get("save_every", 100), steps)))
        cfg = TrainConfig(base=str(base), data=[str(data[s]) for s in self.sources], images=str(images),
                          out=str(out), cache_dir=str(cache_dir))
        return cfg.override(overrides, source=f"recipe {self.name!r}")


_COMMON = {"steps": 600, "batch_size": 64, "lr": 1e-3, "warmup_steps": 30, "save_every": 200, "log_every": 50}

# The contrastive recipe (the default until issue #23): the encoder benchmarks only.
_CONTRASTIVE = {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0}
# The first drop-in (issue #23, alt-text data only): the contrastive recipe plus what the frozen downstream
# models read. It transfers to CLIPSeg but not to the generator at full size: omit_states fitted on P1's
# alt-text frames leaves generator prompts' token states where the base had them (docs/testbed.md).
_DROP_IN_ALT_TEXT = {**_CONTRASTIVE, "preserve_embeds": 1.0, "omit_states": 3.0, "seg_loss": 1.0}
# The default: the same terms on data that includes generator prompts (the `t2i` source, training frames
# disjoint from t2i-compare's), with the padded states of affirmative texts preserved (preserve_states: the
# UNet reads the padding), omit_states on object negations only (attribute negations stay with the
# contrastive terms) and MCQ at 2. Measured on the world in docs/testbed.md ("The drop-in: what transfers").
_DROP_IN_PROMPTS = {**_DROP_IN_ALT_TEXT, "mcq": 2.0, "preserve_states": 1.0, "omit_types": ["absence"]}
# `drop-in-states-1` (the default before) adds the text-to-image term over counterfactual images of object
# negations (the scene plus the negated object). Chosen on validation sets (benchmark twins of seed 90210,
# seg-compare seed 7, the generator's validation prompts), never on the evaluated sets: over `drop-in-prompts`
# it lifted existence and kept the generator's subject on affirmative prompts. P2's answer-flipped images (the
# chair blue against "the chair is not blue") lift pairwise referring but cost that subject rate:
# `drop-in-attribute-images`.
_DROP_IN_D1 = {**_DROP_IN_PROMPTS, "distractor": 1.0, "distractor_types": ["absence"]}
# The default holds affirmative prompts' padded states 3x harder (preserve_states 3: the frozen UNet reads them)
# and doubles the counterfactual-image term to keep existence where preserve_states 3 alone lowered it. Chosen
# on the same validation sets: over `drop-in-states-1` it drew 2-3 points more subjects for affirmative
# validation prompts (reader 0.622 -> 0.642, judge 0.667 -> 0.694; base 0.656 / 0.719) with the encoder
# benchmarks and CLIPSeg within noise (docs/testbed.md, "Holding the padded states harder").
_DROP_IN = {**_DROP_IN_D1, "preserve_states": 3.0, "distractor": 2.0}
# The default trains those terms for 1000 steps instead of 600. Chosen on the same validation sets: existence
# 0.867 -> 0.879, MCQ 0.611 -> 0.703, CLIPSeg's object choice 0.480 -> 0.533, the generator's subject on
# affirmative validation prompts 0.642 / 0.694 -> 0.660 / 0.736 (reader / judge; base 0.656 / 0.719), but
# pairwise referring 0.217 -> 0.174 (docs/testbed.md, "Training longer"). The fine-tune takes 5/3 as long.
_DROP_IN_1000 = {**_DROP_IN, "steps": 1000, "save_every": 250}
# The default adds NegRefCOCOg-format records on training crops (the `crops` source: "the cup that isn't red"
# against a crop of the blue cup and one of the red cup) to the counterfactual-image term, which now takes
# P1's counterfactual scenes and those crops by source (P2's answer-flipped images stay out). Chosen on the
# same validation sets over `drop-in-1000`: pairwise referring 0.175 -> 0.760, CLIPSeg's object choice
# 0.538 -> 0.610 and negated mIoU 0.366 -> 0.388, existence 0.880 -> 0.878, the generator's subject on
# affirmative validation prompts 0.660 / 0.715 -> 0.656 / 0.750; MCQ 0.695 -> 0.651 and held-out MCQ
# 0.485 -> 0.418 down (docs/testbed.md, "Referring crops"). 2000 pairs instead of 1000: existence 0.849.
# Its crops and seg_loss's referring records are written in eight wordings (`language.FINE_TUNING_REFERRING_FORMS`;
# four before): on two validation seeds pairwise 0.76 -> 0.93, held-out MCQ 0.42 -> 0.54, object choice 0.61 ->
# 0.65 (docs/testbed.md, "More training wordings"). That is data, not an override: the recipe reads the same.
_DEFAULT = {**_DROP_IN_1000, "distractor_types": [], "distractor_sources": ["p1", "crops"]}
_SOURCES = ("p1", "p2", "presence")
_DROP_IN_SOURCES = (*_SOURCES, "t2i")

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("default", "the best drop-in measured: per-image MCQ (2) over minimal foils + InfoNCE (0.3) on non-bare "
           "negated captions + text-to-image (2.0) over counterfactual images of object negations and over referring "
           "crops + token, padded-state (3.0) and projected-embedding preservation + omit_states (3.0, object "
           "negations, for a frozen UNet) + seg_loss (1.0, through the world's frozen CLIPSeg); "
           "P1+P2+presence+generator prompts+referring crops; 1000 steps", (*_DROP_IN_SOURCES, "crops"), _DEFAULT,
           seg=True),
    Recipe("drop-in-1000", "the default before referring crops: no crops source, the counterfactual-image term on "
           "object negations only (pairwise referring below chance, 0.18 on the validation twins)", _DROP_IN_SOURCES,
           _DROP_IN_1000, seg=True),
    Recipe("drop-in-600", "drop-in-1000 for 600 steps, the default before 1000 steps (better pairwise referring; "
           "lower existence, MCQ and generator subject rate on the validation sets)", _DROP_IN_SOURCES, _DROP_IN,
           seg=True),
    Recipe("drop-in-states-1", "the default before preserve_states 3: preserve_states 1 and distractor 1 (more "
           "of the generator's subjects lost on affirmative prompts)", _DROP_IN_SOURCES, {**_DROP_IN_D1}, seg=True),
    Recipe("drop-in-prompts", "the default before counterfactual images: no distractor term, preserve_states 1",
           _DROP_IN_SOURCES, {**_DROP_IN_PROMPTS}, seg=True),
    Recipe("drop-in-attribute-images", "drop-in-states-1 with P2's answer-flipped images in the distractor term too, "
           "and seg_loss 2: better pairwise referring, fewer subjects drawn for affirmative prompts",
           _DROP_IN_SOURCES, {**_DROP_IN_PROMPTS, "distractor": 1.0, "seg_loss": 2.0}, seg=True),
    Recipe("contrastive", "the encoder benchmarks only (the default before issue #23): per-image MCQ over minimal "
           "foils + InfoNCE (0.3) on non-bare negated captions + preservation; P1+P2+presence",
           _SOURCES, _CONTRASTIVE),
    Recipe("drop-in-alt-text", "the first drop-in (the default before the generator-prompt source): contrastive + "
           "preserve_embeds + omit_states 3 + seg_loss on P1+P2+presence only", _SOURCES, _DROP_IN_ALT_TEXT, seg=True),
    Recipe("drop-in-seg-choice", "drop-in-600 with seg_loss's object-choice part (seg_choice 1): CLIPSeg picks the "
           "referred object far more often (0.68 vs 0.48 on the validation draw) at a cost in existence, pairwise "
           "referring and the generator's Neg Score: a CLIPSeg recipe (docs/testbed.md, \"Which object CLIPSeg picks\")", _DROP_IN_SOURCES,
           {**_DROP_IN, "seg_choice": 1.0}, seg=True),
    Recipe("drop-in-strong", "drop-in-600 with omit_states 10: generator prompts' states pulled harder toward their "
           "affirmative part", _DROP_IN_SOURCES, {**_DROP_IN, "omit_states": 10.0}, seg=True),
    Recipe("negationclip", "NegationCLIP: InfoNCE only on P1+P2 negated captions, all text layers",
           ("p1", "p2"), {**_COMMON, "infonce": 1.0, "mcq": 0.0}),
    Recipe("hard-negatives", "InfoNCE with each image's foils in the image-to-text pool",
           ("p1", "p2"), {**_COMMON, "infonce": 1.0, "mcq": 0.0, "hard_negatives": True}),
    Recipe("omni-front", "Omni-NegCLIP: presence + absence objectives on the front 2 text layers",
           ("p1", "presence"), {**_COMMON, "infonce": 0.0, "mcq": 0.0, "omni_presence": 1.0, "omni_absence": 1.0,
                                "layers": "front:2"}),
    Recipe("omni-all", "Omni-NegCLIP objectives on all text layers", ("p1", "presence"),
           {**_COMMON, "infonce": 0.0, "mcq": 0.0, "omni_presence": 1.0, "omni_absence": 1.0}),
    Recipe("mcq-omni", "the contrastive recipe plus Omni-NegCLIP's presence/absence objectives (0.5 each)",
           ("p1", "p2", "presence"), {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "omni_presence": 0.5,
                                      "omni_absence": 0.5}),
    Recipe("default-no-preserve", "the contrastive recipe without the preservation term", ("p1", "p2", "presence"),
           {**_COMMON, "infonce": 1.0, "mcq": 1.0, "preserve": 0.0}),
    Recipe("distractor", "the contrastive recipe plus the text-to-image term over counterfactual distractor images (1.0)",
           ("p1", "p2", "presence"), {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "distractor": 1.0}),
    Recipe("split-distill", "the contrastive recipe plus split distillation (1.0, w = 1.0)", ("p1", "p2", "presence"),
           {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "split_distill": 1.0, "split_distill_w": 1.0}),
    Recipe("preserve-embeds", "the contrastive recipe plus preservation of affirmative captions' projected embeddings "
           "(1.0), for drop-in stability in CLIPSeg", ("p1", "p2", "presence"),
           {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "preserve_embeds": 1.0}),
    Recipe("omit-states", "the contrastive recipe plus omit_states (1.0): negated captions' token states toward their "
           "affirmative part's, what a frozen UNet reads", ("p1", "p2", "presence"),
           {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "omit_states": 1.0}),
    Recipe("seg-aware", "the contrastive recipe plus seg_loss (1.0) through the world's frozen CLIPSeg on training "
           "referring expressions", ("p1", "p2", "presence"),
           {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0, "seg_loss": 1.0}, seg=True),
    Recipe("compositional", "the contrastive recipe on data with compositional foils ('a N but no B') and their true "
           "twins", ("p1", "p2", "presence"), {**_COMMON, "infonce": 0.3, "mcq": 1.0, "preserve": 1.0},
           compositional=True),
    Recipe("data-p1", "NegationCLIP ablation: P1 data only", ("p1",), {**_COMMON, "mcq": 0.0}),
    Recipe("data-rand-p1", "NegationCLIP ablation: Rand-P1 data only", ("rand_p1",), {**_COMMON, "mcq": 0.0}),
    Recipe("data-p2", "NegationCLIP ablation: P2 data only", ("p2",), {**_COMMON, "mcq": 0.0}),
    Recipe("data-p1-p2", "NegationCLIP ablation: P1 + P2 data", ("p1", "p2"), {**_COMMON, "mcq": 0.0}),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        from negation_encoder.errors import InputError

        raise InputError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    return RECIPES[name]
