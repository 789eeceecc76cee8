"""Named fine-tuning recipes for the testbed, one YAML file each in this folder.

A recipe file says what it is for (`description`), which of the world's data sources it trains on
(`sources`), whether it needs compositional P1 foils (`compositional`) or trains through the world's frozen
CLIPSeg (`seg`), and its `config`: a partial, grouped TrainConfig. What depends on where the world lives
(the base model, the data files, the image root, the output folder, the referring records and the frozen
segmenter) is filled in by `Recipe.to_config`, the one place a recipe becomes a `TrainConfig` (the demo and
`testbed compare` both go through it); it records the recipe's name in the config, hence in the model card.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from negation_encoder.configs import read_mapping_file
from negation_encoder.errors import ConfigError, InputError
from negation_encoder.training.config import TrainConfig

KEYS = {"description", "sources", "config", "compositional", "seg"}
# What each world model reads from the text tower, as a TrainConfig `pipeline` group (docs/pipelines.md): the
# IF-style, SD-style and SDXL-style generators and the CLIPSeg. SDXL's second slot reads the penultimate states
# and the projected pooled output, so an encoder put in both slots is trained as that slot.
TARGETS: dict[str, dict[str, str]] = {"if": {"family": "if"}, "sd": {"family": "sd1"},
                                      "sdxl": {"family": "sdxl", "slot": "text_encoder_2"},
                                      "clipseg": {"family": "clipseg"}}
STATES_TERMS = ("omit_states", "preserve_states", "unet_loss")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    sources: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    compositional: bool = False  # generate P1's compositional foils and their true twins for this recipe
    seg: bool = False  # trains through the world's frozen CLIPSeg (seg_loss): needs referring records

    def for_target(self, target: str) -> Recipe:
        """This recipe trained for one downstream reader (`TARGETS`): its `pipeline` group set to that reading;
        for `clipseg`, which reads no token states, the states terms are left out (they would be refused). A
        generator that also reads a pooled output (SDXL's second slot: `text_embeds`) gets `omit_pooled` and
        `preserve_pooled` beside the recipe's `omit_states` and `preserve_states`, with their weights (and types):
        the omission and the preservation then reach every input that generator reads (chosen on the SDXL-style
        generator's validation prompts, docs/testbed.md). (CLIPSeg's pooled output is trained through CLIPSeg itself, by `seg_loss`: a referring
        expression's negation must be kept there, not omitted.)"""
        if target not in TARGETS:
            raise InputError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
        cfg = copy.deepcopy(self.config)
        cfg["pipeline"] = dict(TARGETS[target])
        objective = cfg.setdefault("objective", {})
        if target == "clipseg":
            for term in STATES_TERMS:
                objective.pop(term, None)
        elif TrainConfig.from_dict({"pipeline": cfg["pipeline"]}).pipeline.reading().pooled:
            for states, pooled, keep in (("omit_states", "omit_pooled", ("weight", "types")),
                                         ("preserve_states", "preserve_pooled", ("weight",))):
                if states in objective and pooled not in objective:
                    given = objective[states]
                    objective[pooled] = {k: v for k, v in given.items() if k in keep} if isinstance(given, dict) \
                        else given
        return replace(self, config=cfg)

    @property
    def data_variant(self) -> str:
        """Recipes that need differently generated data get their own data folder name."""
        return "data-compositional" if self.compositional else "data"

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        path = Path(path)
        obj = read_mapping_file(path, "recipe")
        bad = sorted(set(obj) - KEYS)
        if bad or not isinstance(obj.get("description"), str) or not isinstance(obj.get("sources"), list):
            raise ConfigError(f"{path}: a recipe holds description (text), sources (a list) and config"
                              + (f"; unknown key(s) {', '.join(bad)}" if bad else ""))
        return cls(path.stem, " ".join(obj["description"].split()), tuple(obj["sources"]), obj.get("config") or {},
                   bool(obj.get("compositional", False)), bool(obj.get("seg", False)))

    def to_config(self, *, base: str | Path, data: Mapping[str, str | Path], images: str | Path, out: str | Path,
                  seed: int = 0, steps: int | None = None, cache_dir: str | Path = "",
                  seg_data: str | Path | None = None, seg_model: str | Path | None = None) -> TrainConfig:
        """The TrainConfig of this recipe on generated data (`data` maps each source to its .jsonl; a `seg`
        recipe also needs `seg_data`, ReferringRecords, and the frozen `seg_model` it trains through).
        `steps` shortens (or lengthens) the run, clipping warmup and checkpoint cadence to it."""
        missing = [s for s in self.sources if s not in data]
        if missing:
            raise InputError(f"recipe {self.name!r} needs data from {', '.join(missing)}")
        cfg = copy.deepcopy(self.config)
        cfg.setdefault("model", {})["base"] = str(base)
        cfg.setdefault("data", {}).update(files=[str(data[s]) for s in self.sources], images=str(images),
                                          cache_dir=str(cache_dir))
        cfg.setdefault("optim", {})["seed"] = seed
        cfg.setdefault("run", {}).update(out=str(out), recipe=self.name)
        if self.seg:
            if seg_data is None or seg_model is None:
                raise InputError(f"recipe {self.name!r} trains through CLIPSeg: it needs seg_data and seg_model")
            term = cfg["objective"]["seg_loss"]
            term = term if isinstance(term, dict) else {"weight": term}
            cfg["objective"]["seg_loss"] = {**term, "data": [str(seg_data)], "model": str(seg_model)}
        if steps is not None:
            optim, run = cfg["optim"], cfg["run"]
            optim.update(steps=steps, warmup_steps=min(optim.get("warmup_steps", 0), steps))
            run["save_every"] = max(1, min(run.get("save_every", 100), steps))
        return TrainConfig.from_dict(cfg, source=f"recipe {self.name!r}")


def _load() -> dict[str, Recipe]:
    folder = resources.files(__name__)
    found = sorted((p for p in folder.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
    recipes = {r.name: r for r in (Recipe.from_file(Path(str(p))) for p in found)}
    # the default first: it is what `negenc testbed recipes` leads with
    return dict(sorted(recipes.items(), key=lambda kv: kv[0] != "default"))


RECIPES: dict[str, Recipe] = _load()


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    return RECIPES[name]
