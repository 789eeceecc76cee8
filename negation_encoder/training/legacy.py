"""Reading the flat config of runs written before TrainConfig had groups.

Their `training_config.json` and checkpoints (`trainer_state.json`) hold keys such as `lr`, `omit_states`
(a weight), `seg_model` or `states_length`. Such a mapping is translated key by key into the grouped form,
so `--resume` of an older checkpoint compares like with like and continues; a term whose weight was 0
is left out (it was off), and so are its options.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..errors import ConfigError

# flat key -> dotted grouped key; a term's weight was its bare name
MOVED: dict[str, str] = {
    "base": "model.base", "layers": "model.layers", "train_embeddings": "model.train_embeddings",
    "train_final_layer_norm": "model.train_final_layer_norm", "train_projection": "model.train_projection",
    "learn_logit_scale": "model.learn_logit_scale",
    "data": "data.files", "images": "data.images", "cache_dir": "data.cache_dir",
    "image_batch_size": "data.image_batch_size", "max_foils": "data.max_foils",
    "steps": "optim.steps", "batch_size": "optim.batch_size", "grad_accum": "optim.grad_accum", "lr": "optim.lr",
    "weight_decay": "optim.weight_decay", "warmup_steps": "optim.warmup_steps", "min_lr_ratio": "optim.min_lr_ratio",
    "max_grad_norm": "optim.max_grad_norm", "mixed_precision": "optim.mixed_precision", "seed": "optim.seed",
    "states_length": "pipeline.length",
    "out": "run.out", "recipe": "run.recipe", "log_every": "run.log_every", "save_every": "run.save_every",
    "keep_checkpoints": "run.keep_checkpoints",
    "hard_negatives": "objective.infonce.hard_negatives", "infonce_on_bare": "objective.infonce.on_bare",
    "omni_margin": "objective.omni_absence.margin",
    "max_distractors": "objective.distractor.max_images", "distractor_types": "objective.distractor.types",
    "distractor_sources": "objective.distractor.sources",
    "split_distill_w": "objective.split_distill.concept_weight",
    "omit_types": "objective.omit_states.types", "states_skip_pooled": "objective.omit_states.skip_pooled",
    "seg_model": "objective.seg_loss.model", "seg_data": "objective.seg_loss.data",
    "seg_images": "objective.seg_loss.images", "seg_batch_size": "objective.seg_loss.batch_size",
    "seg_dice": "objective.seg_loss.dice", "seg_choice": "objective.seg_loss.choice",
    "unet_model": "objective.unet_loss.model", "unet_mode": "objective.unet_loss.mode",
    "unet_guidance": "objective.unet_loss.guidance", "unet_batch_size": "objective.unet_loss.batch_size",
    "unet_on_policy": "objective.unet_loss.on_policy", "unet_sample_steps": "objective.unet_loss.sample_steps",
}
# one flat key fed two terms
SHARED: dict[str, tuple[str, ...]] = {
    "omni_temperature": ("objective.omni_presence.temperature", "objective.omni_absence.temperature"),
}
WEIGHTS = ("infonce", "mcq", "omni_presence", "omni_absence", "distractor", "split_distill", "preserve",
           "preserve_embeds", "preserve_states", "omit_states", "seg_loss", "unet_loss")
# terms that no longer exist, with where their code can be read
REMOVED = {"seg_affirm": "seg_loss's affirmative-target part is no longer in the library (no recipe used it; "
                         "commit 9d58fb7 is the last that has it)"}


def is_flat(obj: dict[str, Any], groups: Collection[str]) -> bool:
    """A mapping in the flat form: it names a flat key (`data`, the one flat key that is also a group's
    name, was a list of files there). `groups`: the grouped form's top-level keys."""
    flat_only = (set(MOVED) | set(SHARED) | set(WEIGHTS) | set(REMOVED) | {"states_mask"}) - set(groups)
    return any(k in flat_only for k in obj) or isinstance(obj.get("data"), list)


def new_key(flat: str) -> str | None:
    """Where a flat key lives now, for error messages (None: not a flat key)."""
    if flat in MOVED:
        return MOVED[flat]
    if flat in SHARED:
        return " and ".join(SHARED[flat])
    if flat == "states_mask":
        return "pipeline.family (if: masked, sd1: unmasked)"
    if flat in WEIGHTS:
        return f"objective.{flat}.weight"
    return None


def from_flat(obj: dict[str, Any], source: str, groups: Collection[str]) -> dict[str, Any]:
    """The grouped mapping of a flat one (values unchecked: `TrainConfig.from_dict` checks them)."""
    groups = [k for k in obj if k in groups and isinstance(obj[k], dict)]
    if groups:
        flat = [k for k in obj if k not in groups]
        raise ConfigError(f"{source}: mixes the grouped form ({', '.join(groups)}) with flat keys of the form before "
                          f"groups: " + ", ".join(f"{k} (now {new_key(k)})" if new_key(k) else k for k in flat))
    unknown = sorted(k for k in obj if k not in MOVED and k not in SHARED and k not in WEIGHTS and k not in REMOVED
                     and k != "states_mask")
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {', '.join(unknown)} in a flat (pre-group) config")
    for key, why in REMOVED.items():
        if obj.get(key):
            raise ConfigError(f"{source}: {key} {obj[key]!r}: {why}")
    on = {t for t in WEIGHTS if isinstance(obj.get(t), (int, float)) and not isinstance(obj.get(t), bool) and obj[t] > 0}
    out: dict[str, Any] = {"objective": {t: {"weight": obj[t]} for t in WEIGHTS if t in on}}
    if not any(t in obj for t in WEIGHTS):  # a flat config that names no weight kept the defaults
        out.pop("objective")

    def put(dotted: str, value: Any) -> None:
        parts = dotted.split(".")
        if parts[0] == "objective":
            if parts[1] in on:
                out["objective"][parts[1]][parts[2]] = value
            return  # an option of a term that was off
        out.setdefault(parts[0], {})[parts[1]] = value

    # the flat form described the pipeline by its mask alone: with it, the IF-style reading of the testbed's
    # generator (last_hidden_state, masked); without it, SD 1.x's (last_hidden_state, unmasked)
    out.setdefault("pipeline", {})["family"] = "if" if obj.get("states_mask", True) else "sd1"
    for key, value in obj.items():
        if key in MOVED:
            put(MOVED[key], value)
        elif key in SHARED:
            for dotted in SHARED[key]:
                put(dotted, value)
    return out
