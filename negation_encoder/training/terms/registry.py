"""The one list of loss terms: a name per term class, in the order the objective sums them.

A term is registered by decorating its class (`@register`); the built-in terms register when
`negation_encoder.training.terms` is imported, in the order it imports them. Third-party and experimental
terms register the same way from their own modules (the testbed's experiments do), so adding a term
touches its own file and one registration, nothing else.
"""

from __future__ import annotations

import re

from ...errors import ConfigError

REGISTRY: dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(cls: type) -> type:
    """Register a `LossTerm` subclass under its `name` (a lowercase identifier, used as its config key)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{cls.__name__}.name must be a lowercase identifier, got {name!r}")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"a loss term named {name!r} is already registered ({REGISTRY[name].__qualname__})")
    REGISTRY[name] = cls
    return cls


def term_class(name: str, source: str = "objective") -> type:
    """The registered class of term `name`; an unknown name is a `ConfigError` listing the known ones."""
    if name not in REGISTRY:
        raise ConfigError(f"{source}: unknown loss term {name!r}; registered terms: {', '.join(REGISTRY)}")
    return REGISTRY[name]
