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


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM) while a command ran: raised where the command stood, so
    locks and temporary files are released on the way out. A BaseException, like KeyboardInterrupt, so
    that no `except Exception` swallows it. The CLI answers with one line (exit 143) saying what happened
    and how to resume; `resume_note` is where the run stood, set by the command that knows it (training:
    the step and the last checkpoint), and `folders` the run folders the process held when the signal came."""

    def __init__(self, signal_name: str = "SIGTERM", folders: tuple = ()):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.folders = folders
        self.resume_note: str | None = None
