"""Dataclass configs that validate themselves, and command-line flags built from them.

Why one helper: a flag checked only by the CLI is a value the Python API accepts unchecked. Each config
dataclass lists its problems in `problems()` (one phrase per problem, naming the field); `__post_init__`
raises `ConfigError` (an `InputError`) with all of them, so `SegEvalConfig(resamples=0)` and `--resamples 0` are refused
with the same words. `add_config_arguments` turns the fields into argparse flags (`batch_size` ->
`--batch-size`, help and default from the field), and `config_from_args` builds the config back, so the
CLI and the API accept and refuse exactly the same things.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Iterable | None = None,  # noqa: A002
           flag: str | None = None, cli: bool = True, metavar: str | None = None, **metadata):
    """A dataclass field with what the CLI needs: its help, choices, and whether it is a flag at all."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "flag": flag, "cli": cli,
            "metavar": metavar, **metadata}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Validated:
    """Mixin: a dataclass whose `__post_init__` raises every problem `problems()` finds, in one line."""

    def problems(self) -> list[str]:
        return []

    def __post_init__(self) -> None:
        problems = self.problems()
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                problems.append(f"{f.name} must be one of {', '.join(map(str, choices))}, got {getattr(self, f.name)!r}")
        if problems:
            raise ConfigError("; ".join(problems))


# ---- reusable checks: each returns a phrase naming the field, or None

def at_least(obj, name: str, low: float, allow_none: bool = False) -> str | None:
    v = getattr(obj, name)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
        return f"{name} must be a number >= {low:g}, got {v!r}"
    return None


def collect(*problems: str | None) -> list[str]:
    return [p for p in problems if p]


# ---- argparse from fields

def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _unwrap_optional(tp):
    """`X | None` -> X (a flag's value is never None once given)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _base_type(tp):
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    return origin if origin in (tuple, list) else tp


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: Iterable[str] = (),
                         defaults: dict | None = None) -> None:
    """One flag per field of `cls` (fields with `cli=False` or in `skip` are left out). Tuple/list fields
    take a comma list; bools are switches (`--x` turns a False default on, `--no-x` a True one off)."""
    hints = typing.get_type_hints(cls)
    skip = set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        tp = _base_type(hints[f.name])
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING))
        required = default is dataclasses.MISSING
        own = "(default" in (f.metadata.get("help") or "")  # the help says it in words (e.g. a long local path)
        shown = "" if required or own or default in (None, "", ()) else f" (default: {_show(default)})"
        help_text = ((f.metadata.get("help") or "") + shown).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        if tp is bool:  # a switch that changes the default: --x for False defaults, --no-x for True ones
            kwargs["help"] = (f.metadata.get("help") or "").replace("%", "%%")
            name = flag_name(f) if not default else "--no-" + flag_name(f)[2:]
            parser.add_argument(name, action="store_false" if default else "store_true", default=default, **kwargs)
            continue
        if tp in (tuple, list):
            kwargs["type"] = _comma_list(f.name, typing.get_args(_unwrap_optional(hints[f.name])))
        elif tp in (int, float, str):
            kwargs["type"] = tp
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag_name(f), required=required, default=None if required else default, **kwargs)


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def _comma_list(name: str, args: tuple):
    item = next((a for a in args if a is not Ellipsis), str)

    def parse(text: str):
        try:
            return tuple(item(x.strip()) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {item.__name__}, got {text!r}") from None

    parse.__name__ = f"comma list of {item.__name__}"
    return parse


def config_from_args(cls, args: argparse.Namespace, **extra):
    """Build `cls` from the parsed flags (fields missing from `args` keep their defaults) and `extra`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name) and f.init}
    values.update(extra)
    return cls(**values)
