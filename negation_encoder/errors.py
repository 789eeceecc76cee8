"""Errors the CLI turns into exit code 2 with one line on stderr (bad input), or 1 (a failed run).

Every kind of bad input is an `InputError` (itself a `ValueError`, so `except ValueError` still catches
it); the subclasses say which kind, for callers that handle one and let the others through."""


class InputError(ValueError):
    """Bad user input: a file, a field, an argument. The message names the culprit in one line."""


class ConfigError(InputError):
    """A config key or value that is not accepted (unknown key, out of range, contradicting another)."""


class IncompatibleModelError(InputError):
    """An encoder or model that does not fit where it is put: the wrong class, or widths, projections,
    vocabulary or positions the receiving model cannot read."""


class DataError(InputError):
    """A bad record or file line: malformed, missing a field, or a field with an impossible value."""


class RunFailed(RuntimeError):
    """A run that started but could not finish correctly (e.g. a NaN loss). Exit code 1."""
