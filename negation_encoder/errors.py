"""Errors the CLI turns into exit code 2 with one line on stderr (bad input), or 1 (a failed run)."""


class InputError(ValueError):
    """Bad user input: a file, a field, an argument. The message names the culprit in one line."""


class RunFailed(RuntimeError):
    """A run that started but could not finish correctly (e.g. a NaN loss). Exit code 1."""


class ConfigError(InputError):
    """A config key or value: unknown, of the wrong type, or out of range."""
