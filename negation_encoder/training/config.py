"""TrainConfig: every knob of a fine-tuning run, typed, validated before any compute, serialisable.

Values are checked against the dataclass annotations wherever they come from: a JSON/YAML file must
hold real types (`"hard_negatives": "no"` is an error, not a switched-on flag), while `--set KEY=VALUE`
strings are parsed by the field's type. Every problem names the key, what was expected and what
arrived. Each field's `metadata["help"]` is what `negenc train --help` lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.records import NEGATION_TYPES
from ..errors import InputError
from .losses import TERMS


def _f(default, help: str, **kw):  # noqa: A002 - mirrors argparse's keyword
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


LAYERS_RE = re.compile(r"^(all|front:\d+|back:\d+|\d+(,\d+)*)$")


@dataclass
class TrainConfig:
    """Fine-tune a CLIP text encoder for negation (vision frozen).

    The defaults are a cautious fine-tune of a real CLIP checkpoint (NegationCLIP-like learning rate,
    all text layers, MCQ + InfoNCE); the testbed's recipes (`negenc testbed recipes`) override them
    for the world's tiny model.
    """

    # inputs and outputs
    base: str = _f("", "CLIPModel folder or Hub id to fine-tune", group="io")
    data: list[str] = _f([], "NegationRecord .jsonl file(s)", group="io")
    images: str = _f("", "image root that the records' `image` paths are relative to", group="io")
    out: str = _f("runs/negenc", "output folder: checkpoints/, train_log.jsonl, model/", group="io")
    cache_dir: str = _f("", "image-embedding cache folder (default <out>/image_cache)", group="io")
    recipe: str = _f("", "name of the recipe this config came from (recorded in the card)", group="io")
    seed: int = _f(0, "seed for data order and initialisation")

    # optimisation
    steps: int = _f(300, "optimizer steps")
    batch_size: int = _f(64, "global batch (split across processes)")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = _f(0.1, "AdamW weight decay on matrices (not on biases/norms)")
    warmup_steps: int = _f(20, "linear warmup steps before the cosine decay")
    min_lr_ratio: float = _f(0.0, "the cosine decays to lr * min_lr_ratio")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: off)")
    mixed_precision: str = _f("no", "no | fp16 | bf16 (accelerate autocast)")

    # what trains (vision is always frozen)
    layers: str = _f("all", "text layers that train: all | front:K | back:K | comma list of indices")
    train_embeddings: bool = _f(True, "token and position embeddings train")
    train_final_layer_norm: bool = _f(True, "the final layer norm trains")
    train_projection: bool = _f(True, "the text projection trains")
    learn_logit_scale: bool = _f(False, "the logit scale trains (clamped to ln 100)")

    # objectives: weights, 0 turns a term off (the names are `losses.TERMS`)
    infonce: float = _f(1.0, "symmetric InfoNCE on the caption that is true for each image", group="objective")
    hard_negatives: bool = _f(False, "each image's foils join the InfoNCE image-to-text pool", group="objective")
    infonce_on_bare: bool = _f(False, "bare negations (captions that affirm nothing: 'a photo with no fork') "
                               "also join the InfoNCE pool", group="objective")
    mcq: float = _f(1.0, "per-image softmax over its true caption(s) and minimal foils", group="objective")
    omni_presence: float = _f(0.0, "Omni-NegCLIP presence objective (push from captions negating present objects)",
                              group="objective")
    omni_absence: float = _f(0.0, "Omni-NegCLIP absence objective (align with absence negations, keep texts apart)",
                             group="objective")
    omni_temperature: float = _f(0.07, "temperature of the Omni objectives", group="objective")
    omni_margin: float = _f(0.8, "cosine above which the Omni absence term separates original and negated texts",
                            group="objective")
    distractor: float = _f(0.0, "text-to-image: a negated caption against counterfactual images that add the "
                           "negated concept (records' distractor_images)", group="objective")
    max_distractors: int = _f(4, "distractor images per record used by the distractor term", group="objective")
    split_distill: float = _f(0.0, "pull each negated caption towards the frozen base's split reading of it "
                              "(affirmative part minus split_distill_w times the negated concept)", group="objective")
    split_distill_w: float = _f(1.0, "the split reading's weight on the negated concept", group="objective")
    preserve: float = _f(0.0, "token-level hidden-state preservation on affirmative captions (what a UNet reads)",
                         group="objective")
    preserve_embeds: float = _f(0.0, "projected-embedding preservation on affirmative captions (what CLIPSeg reads)",
                                group="objective")
    preserve_states: float = _f(0.0, "token-state preservation at the pipeline's padding: every example's affirmative "
                                "text (its caption, or the splitter's affirmative part) keeps the base's states at "
                                "all states_length positions, padding included, as a frozen UNet reads them",
                                group="objective")
    omit_states: float = _f(0.0, "token-state distillation for generators: a negated caption's padded token states "
                            "toward the frozen base's states of its affirmative part (the splitter's), so a "
                            "frozen UNet omits the negated concept", group="objective")
    distractor_types: list[str] = _f([], "negation types (record negation_type) the distractor term trains on; empty: "
                                     "every record with distractor_images. [absence] leaves out P2's answer-flipped "
                                     "images ('the chair is not blue' against the chair blue)", group="objective")
    distractor_sources: list[str] = _f([], "record sources (record `source`) the distractor term trains on; empty: "
                                       "every source. Narrows beside distractor_types: [absence counterfactuals, "
                                       "referring crops] without P2's answer-flipped images, all three being "
                                       "non-presence records with distractor_images", group="objective")
    omit_types: list[str] = _f([], "negation types (record negation_type) omit_states trains on; empty: every "
                               "record the splitter finds a negation in. [absence] leaves attribute negations "
                               "('the cup is not red') to the contrastive terms", group="objective")
    states_skip_pooled: bool = _f(False, "omit_states leaves out each negated caption's pooled (end-of-text) position: "
                                  "the projected embedding CLIP and CLIPSeg read stays the contrastive terms', the "
                                  "other positions a UNet reads are pulled", group="objective")
    states_length: int = _f(77, "token positions the downstream pipeline pads prompts to (omit_states, "
                            "preserve_states, unet_loss)",
                            group="objective")
    states_mask: bool = _f(True, "the downstream pipeline passes the attention mask to the text encoder (the "
                           "world's IF pipeline does; SD 1.x / SDXL do not)", group="objective")
    seg_loss: float = _f(0.0, "segmentation through a frozen CLIPSeg (seg_model): BCE + Dice of its decoder's "
                         "logits on ReferringRecords (seg_data), conditioned on this text tower", group="objective")
    seg_model: str = _f("", "CLIPSeg folder or Hub id whose frozen decoder the seg_loss term runs", group="io")
    seg_data: list[str] = _f([], "ReferringRecord .jsonl file(s) for seg_loss", group="io")
    seg_images: str = _f("", "image root of seg_data's image and mask paths (default: each file's folder)",
                         group="io")
    seg_batch_size: int = _f(32, "referring samples per optimizer step for seg_loss (global)", group="objective")
    seg_dice: float = _f(1.0, "weight of the soft Dice part of seg_loss", group="objective")
    seg_choice: float = _f(0.0, "weight of seg_loss's object-choice part: softplus(mean decoder logit on the record's "
                           "other_mask - on its mask), on records that have an other_mask", group="objective")
    seg_affirm: float = _f(0.0, "weight of seg_loss's affirmative-target part: the tower's projected embedding of a "
                           "referring expression toward the base's projected embedding of the record's `affirmative` "
                           "expression of the same referent (squared distance over the target's squared norm), on "
                           "records that have one", group="objective")
    unet_loss: float = _f(0.0, "through a frozen diffusion UNet (unet_model): the swapped prompt's prediction "
                          "toward the negative-prompt teacher (unet_mode teacher) or the plain denoising target "
                          "(denoise), on the records' images", group="objective")
    unet_model: str = _f("", "diffusers pipeline folder whose frozen unet/ (and scheduler/, vae/) unet_loss runs",
                         group="io")
    unet_mode: str = _f("teacher", "teacher | denoise", group="objective")
    unet_guidance: float = _f(4.0, "the guidance scale g of the negative-prompt teacher", group="objective")
    unet_batch_size: int = _f(16, "negated examples per optimizer step fed to the UNet (global)", group="objective")
    unet_on_policy: bool = _f(False, "teacher: x_t from the teacher's own sampling trajectories (unet_sample_steps "
                              "DDPM steps, cut at a random step) instead of noised training images", group="objective")
    unet_sample_steps: int = _f(10, "steps of the teacher's trajectories (unet_on_policy)", group="objective")
    max_foils: int = _f(3, "foils per record used by the MCQ / hard-negative terms", group="objective")

    # bookkeeping (may change on --resume)
    log_every: int = _f(10, "steps between train_log.jsonl entries", group="bookkeeping")
    save_every: int = _f(100, "steps between checkpoints", group="bookkeeping")
    keep_checkpoints: int = _f(2, "newest checkpoints kept", group="bookkeeping")
    image_batch_size: int = _f(256, "images per batch when building the embedding cache", group="bookkeeping")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InputError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every value problem, one phrase each, naming the key (types are checked by `from_dict`)."""
        p = []
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "max_foils", "max_distractors",
                     "image_batch_size", "keep_checkpoints", "states_length", "seg_batch_size", "unet_batch_size",
                     "unet_sample_steps"):
            if getattr(self, name) <= 0:
                p.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "min_lr_ratio", "max_grad_norm", "omni_temperature", "omni_margin",
                     "split_distill_w", "seg_dice", "seg_choice", "seg_affirm", "unet_guidance", *TERMS):
            v = getattr(self, name)
            if not math.isfinite(v):
                p.append(f"{name} must be a finite number, got {v}")
            elif v < 0:
                p.append(f"{name} must be >= 0, got {v}")
        if math.isfinite(self.lr) and self.lr == 0:
            p.append("lr must be > 0, got 0")
        if self.omni_temperature == 0:
            p.append("omni_temperature must be > 0, got 0")
        if self.warmup_steps < 0:
            p.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            p.append(f"mixed_precision must be no|fp16|bf16, got {self.mixed_precision!r}")
        if not LAYERS_RE.match(self.layers):
            p.append(f"layers must be all, front:K, back:K or a comma list of indices, got {self.layers!r}")
        if self.unet_loss and not self.unet_model:
            p.append("unet_loss needs unet_model (a diffusers pipeline folder with unet/ and scheduler/)")
        for key in ("omit_types", "distractor_types"):
            bad = [t for t in getattr(self, key) if t not in NEGATION_TYPES]
            if bad:
                p.append(f"{key} must name negation types ({'|'.join(NEGATION_TYPES)}), got {bad}")
        if any(not isinstance(x, str) or not x.strip() for x in self.distractor_sources):
            p.append(f"distractor_sources must be non-empty source names, got {self.distractor_sources}")
        if self.unet_on_policy and self.unet_mode != "teacher":
            p.append("unet_on_policy needs unet_mode teacher (the trajectories are the teacher's)")
        if self.unet_mode not in ("teacher", "denoise"):
            p.append(f"unet_mode must be teacher or denoise, got {self.unet_mode!r}")
        if self.unet_mode == "teacher" and 0 < self.unet_guidance <= 1:
            p.append(f"unet_guidance must be > 1 for the teacher (a negative prompt acts only then), got {self.unet_guidance}")
        if self.seg_loss and not (self.seg_model and self.seg_data):
            p.append("seg_loss needs seg_model (a CLIPSeg folder) and seg_data (ReferringRecord .jsonl files)")
        for part in ("seg_choice", "seg_affirm"):
            if getattr(self, part) and not self.seg_loss:
                p.append(f"{part} is a part of seg_loss: it needs seg_loss > 0")
        if not any(getattr(self, t) for t in TERMS if t != "preserve"):
            p.append(f"at least one of {', '.join(t for t in TERMS if t != 'preserve')} must be > 0")
        return p

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping of real JSON/YAML types; each key's type is checked against the field's."""
        hints = _field_types()
        unknown = sorted(set(obj) - set(hints))
        if unknown:
            raise InputError(f"{source}: unknown config key(s) {', '.join(unknown)}; "
                             f"`negenc train --help` lists the known keys")
        values = {k: _check_type(source, k, v, hints[k]) for k, v in obj.items()}
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix in (".yaml", ".yml"):
                import yaml  # accelerate depends on PyYAML

                obj = yaml.safe_load(text) or {}
            else:
                obj = json.loads(text)
        except Exception as e:  # noqa: BLE001 - any read/parse error becomes one line naming the file
            raise InputError(f"{path}: cannot parse config ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: expected a mapping of config keys, got {type(obj).__name__}")
        return cls.from_dict(obj, source=str(path))

    def override(self, pairs: list[str] | dict[str, Any], source: str = "--set") -> TrainConfig:
        """A copy with `KEY=VALUE` strings (parsed by field type) or a dict of typed values applied."""
        hints = _field_types()
        obj = self.to_dict()
        if isinstance(pairs, dict):
            for k, v in pairs.items():
                if k not in hints:
                    raise InputError(f"{source}: unknown config key {k!r}; `negenc train --help` lists the known keys")
                obj[k] = _check_type(source, k, v, hints[k])
        else:
            for pair in pairs:
                if "=" not in pair:
                    raise InputError(f"{source} expects KEY=VALUE, got {pair!r}")
                k, v = (s.strip() for s in pair.split("=", 1))
                if k not in hints:
                    raise InputError(f"{source}: unknown config key {k!r}; `negenc train --help` lists the known keys")
                obj[k] = _parse_string(source, k, v, hints[k])
        return TrainConfig(**obj)


# Keys a resumed run may change: where things are written or read from, and how often it logs or saves.
# The data files are compared by content (`trainer.data_fingerprint`), not by path.
BOOKKEEPING_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                         if f.metadata.get("group") in ("bookkeeping", "io")
                         and f.name not in ("base", "seg_model", "unet_model"))


def resume_conflicts(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Keys whose values differ between a checkpoint's config and this one, ignoring bookkeeping:
    anything else changes what is trained."""
    now = current.to_dict()
    # a key the checkpoint lacks was added to TrainConfig after it was written: it trained with the default
    default = {f.name: _field_default(f) for f in dataclasses.fields(TrainConfig)}
    was = {k: saved[k] if k in saved else default[k] for k in now}
    return [f"{k} ({was[k]!r} -> {now[k]!r})" for k in now if k not in BOOKKEEPING_KEYS and was[k] != now[k]]


def _field_default(f: dataclasses.Field) -> Any:
    """A TrainConfig field's default (every field has one: a config file may leave any key out)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def config_help() -> str:
    """The config keys with their types, defaults and meaning (for `negenc train --help`)."""
    hints = _field_types()
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = _field_default(f)
        lines.append(f"  {f.name:24s} {_type_name(hints[f.name]):9s} {default!r:>12}  {f.metadata['help']}")
    return "\n".join(lines)


# ---- typed parsing from the annotations

def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(tp) -> str:
    return "list[str]" if typing.get_origin(tp) is list else tp.__name__


def _check_type(source: str, key: str, value: Any, tp) -> Any:
    """A value from JSON/YAML or Python: must already have the field's type (ints may stand for floats,
    one string for a one-element list)."""
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif typing.get_origin(tp) is list:
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        raise InputError(f"{source}: key {key!r} expects {_type_name(tp)}, got {type(value).__name__} "
                         f"{json.dumps(value) if _jsonable(value) else repr(value)}")
    return value


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _parse_string(source: str, key: str, value: str, tp) -> Any:
    """A `--set` string parsed by the field's type."""
    try:
        if tp is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int:
            return int(value)
        if tp is float:
            return float(value)
        if typing.get_origin(tp) is list:
            return [v for v in value.split(",") if v]
        return value
    except ValueError:
        raise InputError(f"{source}: key {key!r} expects {_type_name(tp)}, got {value!r}") from None
