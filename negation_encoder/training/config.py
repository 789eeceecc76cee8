"""TrainConfig: every knob of a fine-tuning run, grouped, typed, validated before any compute, serialisable.

    model:     which checkpoint and which of its text parameters train
    data:      the NegationRecord files, their images, the embedding cache, foils per record
    optim:     steps, batch, AdamW and its schedule, precision, seed
    pipeline:  how the downstream pipeline reads the tower's token states (length, attention mask)
    objective: {term name: that term's config} for the terms that train (`terms.REGISTRY`)
    run:       output folder, recipe name, logging and checkpoint cadence

Every group is a `configs.Validated` dataclass, so a bad value is refused with the same words from a file,
from `--set` or from Python. A file must hold real types (`hard_negatives: "no"` is an error, not a
switched-on flag); `--set objective.mcq.weight=2` strings are parsed by the field's type. Runs written
before the groups existed saved flat keys (`lr`, `omit_states`, `seg_model`, ...): `from_dict` reads those
(`legacy.py`), so their checkpoints still resume.
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

from ..conditioning import FAMILIES, Reading, reading
from ..configs import (
    Validated,
    check_value,
    field_default,
    flatten,
    from_mapping,
    option,
    parse_value,
    read_mapping_file,
)
from ..errors import ConfigError
from .legacy import from_flat, is_flat, new_key
from .terms import REGISTRY, TermConfig, term_class

LAYERS_RE = re.compile(r"^(all|front:\d+|back:\d+|\d+(,\d+)*)$")
FROZEN_DTYPES = ("float32", "bfloat16", "float16")  # torch dtype names


def _positive(obj, *names: str) -> list[str]:
    return [f"{n} must be > 0, got {getattr(obj, n)}" for n in names if getattr(obj, n) <= 0]


def _finite_at_least(obj, low: float, *names: str) -> list[str]:
    out = []
    for n in names:
        v = getattr(obj, n)
        if not math.isfinite(v):
            out.append(f"{n} must be a finite number, got {v}")
        elif v < low:
            out.append(f"{n} must be >= {low:g}, got {v}")
    return out


@dataclass
class ModelConfig(Validated):
    """Which checkpoint, and what trains (the vision tower never does)."""

    base: str = option("", "CLIPModel folder or Hub id to fine-tune")
    layers: str = option("all", "text layers that train: all | front:K | back:K | comma list of indices")
    train_embeddings: bool = option(True, "token and position embeddings train")
    train_final_layer_norm: bool = option(True, "the final layer norm trains")
    train_projection: bool = option(True, "the text projection trains")
    learn_logit_scale: bool = option(False, "the logit scale trains (clamped to ln 100)")

    def problems(self) -> list[str]:
        p = super().problems()
        if not LAYERS_RE.match(self.layers):
            p.append(f"layers must be all, front:K, back:K or a comma list of indices, got {self.layers!r}")
        return p


@dataclass
class DataConfig(Validated):
    files: list[str] = option([], "NegationRecord .jsonl file(s) (compared by content on --resume)", resume=True)
    images: str = option("", "image root that the records' `image` paths are relative to", resume=True)
    cache_dir: str = option("", "image-embedding cache folder (default <run.out>/image_cache)", resume=True)
    image_batch_size: int = option(256, "images per batch when building the embedding cache", resume=True)
    max_foils: int = option(3, "foils per record the terms that read foils use")
    frozen_cache_mb: int = option(1024, "memory for frozen models' outputs kept across steps (the base tower's "
                                  "states of texts seen before, CLIPSeg's vision activations); 0: recompute "
                                  "every step", resume=True)

    def problems(self) -> list[str]:
        p = super().problems() + _positive(self, "image_batch_size", "max_foils")
        if self.frozen_cache_mb < 0:
            p.append(f"frozen_cache_mb must be >= 0, got {self.frozen_cache_mb}")
        return p


@dataclass
class OptimConfig(Validated):
    steps: int = option(300, "optimizer steps")
    batch_size: int = option(64, "global batch (split across processes)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    lr: float = option(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = option(0.1, "AdamW weight decay on matrices (not on biases/norms)")
    warmup_steps: int = option(20, "linear warmup steps before the cosine decay")
    min_lr_ratio: float = option(0.0, "the cosine decays to lr * min_lr_ratio")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: off)")
    mixed_precision: str = option("no", "accelerate autocast", choices=("no", "fp16", "bf16"))
    frozen_dtype: str = option("float32", "dtype the frozen models run in (the base tower's copy, unet_loss's UNet "
                               "and VAE, seg_loss's CLIPSeg); their outputs are read in float32. bfloat16 halves "
                               "their memory and speeds them up on GPUs; the trained tower keeps its precision",
                               choices=FROZEN_DTYPES)
    seed: int = option(0, "seed for data order and initialisation")

    def problems(self) -> list[str]:
        p = super().problems() + _positive(self, "steps", "batch_size", "grad_accum")
        p += _finite_at_least(self, 0, "lr", "weight_decay", "min_lr_ratio", "max_grad_norm")
        if math.isfinite(self.lr) and self.lr == 0:
            p.append("lr must be > 0, got 0")
        if self.warmup_steps < 0:
            p.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        return p


@dataclass
class PipelineConfig(Validated):
    """The pipeline the encoder is trained for, and the CLIP slot it fills: which layer of the tower, with
    or without the final norm and the attention mask, at how many padded positions that pipeline reads
    (`negation_encoder.conditioning`). The terms that train token states train them as this reading."""

    family: str = option("sd1", "the pipeline family: " + ", ".join(FAMILIES) + " (if: a pixel-space IF-style "
                         "pipeline that reads last_hidden_state with the mask, as the testbed's generator does)",
                         choices=FAMILIES)
    slot: str = option("text_encoder", "the pipeline's CLIP slot this tower fills (SDXL and SD3: text_encoder or "
                       "text_encoder_2)")
    clip_skip: int = option(0, "the pipeline's clip_skip (0: none): the layer its UNet reads moves up by this many")
    length: int = option(77, "token positions the pipeline pads prompts to")

    def problems(self) -> list[str]:
        p = super().problems() + _positive(self, "length")
        if self.family in FAMILIES and not p:
            try:
                self.reading()
            except ConfigError as e:
                p.append(str(e))
        return p

    def reading(self) -> Reading:
        return reading(self.family, self.slot, self.clip_skip or None, self.length)


@dataclass
class RunConfig(Validated):
    """Where the run is written and how often; may change on --resume."""

    out: str = option("runs/negenc", "output folder: checkpoints/, train_log.jsonl, model/", resume=True)
    recipe: str = option("", "name of the recipe this config came from (recorded in the card)", resume=True)
    log_every: int = option(10, "steps between train_log.jsonl entries", resume=True)
    save_every: int = option(100, "steps between checkpoints", resume=True)
    keep_checkpoints: int = option(2, "newest checkpoints kept", resume=True)

    def problems(self) -> list[str]:
        return super().problems() + _positive(self, "log_every", "save_every", "keep_checkpoints")


GROUPS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                           "pipeline": PipelineConfig, "run": RunConfig}
TOP_KEYS = (*GROUPS, "objective")


def default_objective() -> dict[str, TermConfig]:
    """NegationCLIP-like: InfoNCE and MCQ at weight 1."""
    return {"infonce": term_class("infonce").config_class(weight=1.0),
            "mcq": term_class("mcq").config_class(weight=1.0)}


@dataclass
class TrainConfig(Validated):
    """Fine-tune a CLIP text encoder for negation (vision frozen).

    The defaults are a cautious fine-tune of a real CLIP checkpoint (NegationCLIP-like learning rate, all
    text layers, InfoNCE + MCQ); the testbed's recipes override them for the world's tiny model. A term
    absent from `objective`, or with weight 0, is off.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    objective: dict[str, TermConfig] = field(default_factory=default_objective)
    run: RunConfig = field(default_factory=RunConfig)

    def problems(self) -> list[str]:
        p = super().problems()
        for name, cfg in self.objective.items():
            cls = term_class(name)
            if not isinstance(cfg, cls.config_class):
                p.append(f"objective.{name} must be a {cls.config_class.__name__}, got {type(cfg).__name__}")
        on = self.enabled_terms()
        if not any(not term_class(n).regularizer for n in on):
            trainers = [n for n, c in REGISTRY.items() if not c.regularizer]
            p.append(f"at least one of {', '.join(f'objective.{n}' for n in trainers)} must have weight > 0")
        return p

    def enabled_terms(self) -> list[str]:
        """The terms with weight > 0, in registry order (the order the objective sums them)."""
        return [n for n in REGISTRY if n in self.objective and self.objective[n].weight > 0]

    def term(self, name: str) -> TermConfig | None:
        """The config of term `name` when it is enabled, else None."""
        cfg = self.objective.get(name)
        return cfg if cfg is not None and cfg.weight > 0 else None

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {g: dataclasses.asdict(getattr(self, g)) for g in GROUPS if g != "run"}
        out["objective"] = {n: dataclasses.asdict(c) for n, c in self.objective.items()}
        out["run"] = dataclasses.asdict(self.run)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=110)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping of real JSON/YAML types: the groups above (each may be left out), or the flat
        keys of a run written before the groups existed (`legacy.from_flat`)."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(obj).__name__}")
        if is_flat(obj, TOP_KEYS):
            obj = from_flat(obj, source, TOP_KEYS)
        unknown = sorted(set(obj) - {*GROUPS, "objective"})
        if unknown:
            raise ConfigError(f"{source}: unknown config key(s) {', '.join(unknown)}; the groups are "
                              f"{', '.join([*GROUPS, 'objective'])} (`negenc train --help` lists every key)")
        values: dict[str, Any] = {g: _group(GROUPS[g], obj[g], source, g) for g in GROUPS if g in obj}
        if "objective" in obj:
            values["objective"] = _objective(obj["objective"], source)
        return _build(cls, values, source)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_mapping_file(path, "config"), source=str(path))

    def override(self, pairs: list[str] | dict[str, Any], source: str = "--set") -> TrainConfig:
        """A copy with dotted keys set: `KEY=VALUE` strings (parsed by the field's type) or a dict of typed
        values. `objective.TERM.KEY` enables TERM with its defaults if it was off; `objective.TERM=W` (or the
        dict value W) sets its weight."""
        obj = self.to_dict()
        items = pairs.items() if isinstance(pairs, dict) else [_split_pair(p, source) for p in pairs]
        for key, value in items:
            _set(obj, key, value, parse=not isinstance(pairs, dict), source=source)
        return TrainConfig.from_dict(obj, source=source)


def _split_pair(pair: str, source: str) -> tuple[str, str]:
    if "=" not in pair:
        raise ConfigError(f"{source} expects KEY=VALUE, got {pair!r}")
    k, v = (s.strip() for s in pair.split("=", 1))
    return k, v


def _group(cls, value, source: str, prefix: str):
    return from_mapping(cls, value, source, prefix=f"{prefix}.")


def _objective(value, source: str) -> dict[str, TermConfig]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: objective must map term names to their configs, got {type(value).__name__}")
    out = {}
    for name, cfg in value.items():
        cls = term_class(name, source=f"{source}: objective")
        if not isinstance(cfg, dict):  # a bare number is the weight
            cfg = {"weight": check_value(source, f"objective.{name}", cfg, float)}
        out[name] = _group(cls.config_class, cfg, source, f"objective.{name}")
    return out


def _build(cls, values: dict, source: str) -> TrainConfig:
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _set(obj: dict, key: str, value: Any, *, parse: bool, source: str) -> None:
    """Set dotted `key` in a `TrainConfig.to_dict()` mapping, typed by the field it names."""
    parts = key.split(".")
    if parts[0] == "objective":
        if len(parts) not in (2, 3):
            raise ConfigError(f"{source}: {key!r}: expected objective.TERM or objective.TERM.KEY")
        cls = term_class(parts[1], source=f"{source}: {key}").config_class
        term = obj["objective"].setdefault(parts[1], {f.name: field_default(f) for f in dataclasses.fields(cls)})
        name = parts[2] if len(parts) == 3 else "weight"
        _assign(term, cls, name, value, parse, source, key)
        return
    if parts[0] in GROUPS and len(parts) == 2:
        _assign(obj[parts[0]], GROUPS[parts[0]], parts[1], value, parse, source, key)
        return
    hint = new_key(key)
    raise ConfigError(f"{source}: unknown config key {key!r}"
                      + (f"; it is now {hint}" if hint else "; `negenc train --help` lists the keys"))


def _assign(target: dict, cls, name: str, value: Any, parse: bool, source: str, key: str) -> None:
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"{source}: unknown config key {key!r}; known: "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    target[name] = parse_value(source, key, value, hints[name]) if parse else check_value(source, key, value,
                                                                                           hints[name])


# Keys a resumed run may change: where things are written or read from, and how often it logs or saves.
# The data files are compared by content (`checks.data_fingerprint`), not by path.
def resume_keys(cfg: TrainConfig) -> set[str]:
    keys = {f"{g}.{f.name}" for g, c in GROUPS.items() for f in dataclasses.fields(c) if f.metadata.get("resume")}
    keys |= {f"objective.{n}.{f.name}" for n, c in cfg.objective.items() for f in dataclasses.fields(c)
             if f.metadata.get("resume")}
    return keys


def resume_conflicts(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Keys whose values differ between a checkpoint's config (grouped, or flat from before the groups)
    and this one, ignoring what may change on resume: anything else changes what is trained. A key the
    saved config lacks was added after it was written: it trained with the default."""
    try:
        was_cfg = TrainConfig.from_dict(saved, source="the checkpoint's config")
    except ConfigError as e:
        return [f"the checkpoint's config cannot be read ({e})"]
    was, now = flatten(_enabled(was_cfg)), flatten(_enabled(current))
    skip = resume_keys(current) | resume_keys(was_cfg)
    return [f"{k} ({was.get(k)!r} -> {now.get(k)!r})" for k in sorted(set(was) | set(now))
            if k not in skip and was.get(k) != now.get(k)]


def _enabled(cfg: TrainConfig) -> dict[str, Any]:
    """The config as compared on resume: a term at weight 0 is the same as a term left out."""
    d = cfg.to_dict()
    d["objective"] = {n: c for n, c in d["objective"].items() if c["weight"] > 0}
    return d


def config_help() -> str:
    """Every config key with its type, default and meaning (for `negenc train --help`)."""
    from ..configs import type_name

    def rows(prefix: str, cls) -> list[str]:
        hints = typing.get_type_hints(cls)
        return [f"  {prefix + f.name:36s} {type_name(hints[f.name]):9s} {field_default(f)!r:>12}  "
                f"{f.metadata.get('help', '')}" for f in dataclasses.fields(cls)]

    lines = []
    for g, cls in GROUPS.items():
        lines += rows(f"{g}.", cls)
    for name, term in REGISTRY.items():
        lines.append(f"  objective.{name}: {term.summary} (records: {term.records})")
        lines += rows(f"objective.{name}.", term.config_class)
    return "\n".join(lines)
