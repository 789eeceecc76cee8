"""Dataclass configs that validate themselves, and command-line flags built from them.

Why one helper: a flag checked only by the CLI is a value the Python API accepts unchecked. Each config
dataclass lists its problems in `problems()` (one phrase per problem, naming the field); `__post_init__`
raises `ConfigError` (an `InputError`) with all of them, so `SegEvalConfig(resamples=0)` and `--resamples 0` are
refused
with the same words. `add_config_arguments` turns the fields into argparse flags (`batch_size` ->
`--batch-size`, help and default from the field), and `config_from_args` builds the config back, so the
CLI and the API accept and refuse exactly the same things.

Config files (JSON or YAML) are read by `read_mapping_file` and turned into (nested) dataclasses by
`from_mapping`, which checks each value against its field's type and names every problem by its dotted
key; `parse_value` reads a command-line string by the field's type.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, InputError


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


# ---- typed reading of mappings (config files) into dataclasses

def type_name(tp) -> str:
    tp = _unwrap_optional(tp)
    if typing.get_origin(tp) in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list[{args[0].__name__ if args else 'str'}]"
    return getattr(tp, "__name__", str(tp))


def check_value(source: str, key: str, value: Any, tp) -> Any:
    """A value from JSON/YAML or Python, which must already have the field's type (ints may stand for
    floats, one string for a one-element list of strings). Returns it (floats as float, lists as lists)."""
    tp = _unwrap_optional(tp)
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
    elif typing.get_origin(tp) in (list, tuple):
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = list(value) if ok else value
    if not ok:
        shown = json.dumps(value) if _jsonable(value) else repr(value)
        raise ConfigError(f"{source}: key {key!r} expects {type_name(tp)}, got {type(value).__name__} {shown}")
    return value


def parse_value(source: str, key: str, text: str, tp) -> Any:
    """A command-line string (`--set KEY=VALUE`) parsed by the field's type."""
    tp = _unwrap_optional(tp)
    try:
        if tp is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if typing.get_origin(tp) in (list, tuple):
            return [v for v in text.split(",") if v]
        return text
    except ValueError:
        raise ConfigError(f"{source}: key {key!r} expects {type_name(tp)}, got {text!r}") from None


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh copy for mutable defaults)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def from_mapping(cls, obj: Any, source: str, prefix: str = ""):
    """`cls` built from a mapping of real JSON/YAML types, each value checked against its field's type and
    every problem named by its dotted key (`prefix` + field). Nested dataclass fields take mappings."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; known under {where}: "
                         f"{', '.join(fields)}")
    values = {}
    for k, v in obj.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            values[k] = from_mapping(tp, v, source, f"{prefix}{k}.")
        else:
            values[k] = check_value(source, prefix + k, v, tp)
    try:
        return cls(**values)
    except ConfigError as e:
        if str(e).startswith(f"{source}: "):  # a nested mapping's problem, already named
            raise
        raise ConfigError(f"{source}: {where}: {e}") from None


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float syntax: PyYAML follows YAML 1.1, where `1e-5` (no dot)
    is a string, so `lr: 1e-5` would be refused (and its range never checked)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_mapping_file(path: str | Path, what: str = "config") -> dict:
    """A JSON or YAML (`.yaml`/`.yml`) file holding one mapping; a UTF-8 byte-order mark is accepted.
    Any read or parse problem is one `InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
        obj = yaml.load(text, Loader=YamlLoader) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except Exception as e:  # noqa: BLE001 - any read/parse error becomes one line naming the file
        first = (str(e).splitlines() or [""])[0]
        raise InputError(f"{path}: cannot parse {what} ({type(e).__name__}: {first})") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a mapping of {what} keys, got {type(obj).__name__}")
    return obj


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested config dicts as dotted keys (for diffs and messages)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
