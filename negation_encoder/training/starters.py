"""Starter configs for real pipelines: the drop-in recipe for each target, one commented YAML file each in
`negation_encoder/starters/` (`negenc train --print-config TARGET`). Each names the base tower the
target's pipeline ships, the reading of that pipeline (`pipeline`), and the terms the testbed found to
transfer, with a comment per term saying what it is for and which data it needs."""

from __future__ import annotations

from importlib import resources

from ..errors import ConfigError
from .config import TrainConfig

TARGETS = ("sd1", "sd2", "sdxl", "sd3", "flux", "clipseg", "retrieval")
ALIASES = {"real": "retrieval"}  # the earlier name of the real-checkpoint starter


def starter_text(target: str) -> str:
    """The starter YAML of `target`, comments included."""
    name = ALIASES.get(target, target)
    if name not in TARGETS:
        raise ConfigError(f"--print-config: expected a target ({', '.join(TARGETS)}), got {target!r}")
    return resources.files("negation_encoder").joinpath(f"starters/{name}.yaml").read_text(encoding="utf-8")


def starter_config(target: str) -> TrainConfig:
    """The starter of `target` as a TrainConfig (each is a config `negenc train` accepts)."""
    import yaml

    from ..configs import YamlLoader

    return TrainConfig.from_dict(yaml.load(starter_text(target), Loader=YamlLoader), source=f"starter {target!r}")
