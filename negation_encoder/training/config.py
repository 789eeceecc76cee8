"""TrainConfig: every knob of a fine-tuning run, serialisable, loadable from JSON/YAML, overridable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError


@dataclass
class TrainConfig:
    """Fine-tune a CLIP text encoder for negation. Defaults are the testbed's default recipe."""

    # inputs and outputs
    base: str = ""  # CLIPModel folder or Hub id
    data: list[str] = field(default_factory=list)  # NegationRecord .jsonl files
    images: str = ""  # image root the records' `image` paths are relative to
    out: str = "runs/negenc"
    cache_dir: str = ""  # image-embedding cache; default <out>/image_cache
    seed: int = 0

    # optimisation
    steps: int = 300  # optimizer steps
    batch_size: int = 64  # global batch (split across processes)
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.1
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16

    # what trains (vision is always frozen)
    layers: str = "all"  # all | front:K | back:K | comma list of layer indices
    train_embeddings: bool = True
    train_final_layer_norm: bool = True
    train_projection: bool = True
    learn_logit_scale: bool = False

    # objectives: weights, 0 turns a term off
    infonce: float = 1.0  # symmetric InfoNCE on the true caption of each record
    hard_negatives: bool = False  # foils join the InfoNCE image-to-text pool
    infonce_on_bare: bool = False  # bare negations ("no fork here") also join the InfoNCE pool
    mcq: float = 1.0  # per-image softmax over the true caption and its foils
    omni_presence: float = 0.0
    omni_absence: float = 0.0
    omni_temperature: float = 0.07
    omni_margin: float = 0.8
    preserve: float = 0.0  # token-level hidden-state preservation on affirmative captions
    max_foils: int = 3

    # bookkeeping
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end (if an eval hook is given)
    save_every: int = 100
    keep_checkpoints: int = 2
    image_batch_size: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        problems = self.problems()
        if problems:
            raise InputError("; ".join(problems))

    def problems(self) -> list[str]:
        p = []
        for name in ("steps", "batch_size", "grad_accum", "save_every", "max_foils", "image_batch_size"):
            if getattr(self, name) <= 0:
                p.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lr <= 0:
            p.append(f"lr must be > 0, got {self.lr}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            p.append(f"mixed_precision must be no|fp16|bf16, got {self.mixed_precision!r}")
        if self.warmup_steps < 0:
            p.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (self.layers == "all" or self.layers.startswith(("front:", "back:"))
                or all(x.strip().isdigit() for x in self.layers.split(","))):
            p.append(f"layers must be all, front:K, back:K or a comma list of indices, got {self.layers!r}")
        if not any([self.infonce, self.mcq, self.omni_presence, self.omni_absence]):
            p.append("at least one of infonce, mcq, omni_presence, omni_absence must be > 0")
        return p

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise InputError(f"{source}: unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}")
        return cls(**obj)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml  # accelerate depends on PyYAML

                obj = yaml.safe_load(text) or {}
            else:
                obj = json.loads(text)
        except Exception as e:  # noqa: BLE001 - any parse error becomes one line naming the file
            raise InputError(f"{path}: cannot parse config ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: expected a mapping of config keys, got {type(obj).__name__}")
        return cls.from_dict(obj, source=str(path))

    def override(self, pairs: list[str] | dict[str, Any]) -> TrainConfig:
        """A copy with `KEY=VALUE` strings (CLI) or a dict applied; values are parsed by field type."""
        if isinstance(pairs, dict):
            updates = dict(pairs)
        else:
            updates = {}
            for pair in pairs:
                if "=" not in pair:
                    raise InputError(f"--set expects KEY=VALUE, got {pair!r}")
                k, v = pair.split("=", 1)
                updates[k.strip()] = v
        types = {f.name: f.type for f in dataclasses.fields(self)}
        obj = self.to_dict()
        for k, v in updates.items():
            if k not in types:
                raise InputError(f"unknown config key {k!r}")
            obj[k] = _parse(k, v, str(types[k])) if isinstance(v, str) else v
        return TrainConfig.from_dict(obj)


def _parse(key: str, value: str, type_name: str) -> Any:
    try:
        if type_name == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name.startswith("list"):
            return [v for v in value.split(",") if v]
        return value
    except ValueError:
        raise InputError(f"config key {key!r} expects {type_name}, got {value!r}") from None
