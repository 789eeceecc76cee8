"""`negenc`: a thin command line over the public API.

Each subcommand module exports `<name>_command_parser(subparsers)`, which registers its parser and
sets `func`. `main(argv)` is callable in-process, so tests run commands without a shell.
Exit codes: 0 ok, 1 a failed run (an OS error on output too: read-only, no space, permission, quota: one
line naming the path and the cause), 2 bad input (one line on stderr naming the culprit), 143 terminated
(SIGTERM) and 130 interrupted (Ctrl-C), each with one line saying where the run stood and how to resume.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..errors import InputError, RunFailed, Terminated
from ..runio import held_folders, os_error_line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already says it, or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "(default" in text or "%(default)" in text or d is None or d is False or d is argparse.SUPPRESS \
                or (isinstance(d, (list, tuple)) and not d):
            return text
        if action.option_strings and action.nargs != 0:
            return text + " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage dump) and exits 2, and shows defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        if kwargs["formatter_class"] is argparse.RawDescriptionHelpFormatter:
            kwargs["formatter_class"] = _HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import convert, data, demo, evaluate, export, generate, publish, seg, split, t2i, testbed, train

    parser = _Parser(prog="negenc", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"negenc {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    demo.demo_command_parser(sub)
    data.data_command_parser(sub)
    generate.generate_command_parser(sub)
    train.train_command_parser(sub)
    testbed.testbed_command_parser(sub)
    publish.publish_command_parser(sub)
    evaluate.eval_command_parser(sub)
    t2i.t2i_command_parser(sub)
    seg.seg_command_parser(sub)
    split.split_command_parser(sub)
    convert.convert_command_parser(sub)
    export.export_command_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad flag (2), or --help / --version (0): the code, also in-process
        return int(e.code or 0)
    if not hasattr(args, "func"):
        # `negenc` alone, or a command group without its subcommand: show the relevant help.
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 0 if argv is None or not argv else 2
    if getattr(args, "no_progress", False):
        from .progress import silence_progress

        silence_progress()
    previous = _install_stop_handlers()
    try:
        return int(args.func(args) or 0)
    except Terminated as e:
        print(f"negenc: terminated ({e.signal_name}){_resume_hint(e, e.folders)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt as e:
        print(f"negenc: interrupted{_resume_hint(e, getattr(e, 'folders', ()))}", file=sys.stderr)
        return 130
    except InputError as e:
        print(f"negenc: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"negenc: run failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # on output: read-only, full, no permission, over quota (writes name their path)
        print(f"negenc: run failed: {os_error_line(e)}", file=sys.stderr)
        return 1
    finally:
        _restore_stop_handlers(previous)


def _install_stop_handlers() -> dict:
    """SIGTERM raises `Terminated` (and Ctrl-C KeyboardInterrupt) where the command stands, with the run
    folders it holds at that moment, so the way out releases locks and the last line says how to resume.
    Only the main thread may set handlers (an in-process caller on another thread keeps the defaults)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum, _frame):
        folders = tuple(held_folders())
        if signum == signal.SIGINT:
            e = KeyboardInterrupt()
            e.folders = folders
            raise e
        raise Terminated(signal.Signals(signum).name, folders)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, stop)
    return previous


def _restore_stop_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _resume_hint(e: BaseException, folders) -> str:
    """'; the finished work in OUT is kept; continue with --resume', or the command's own note."""
    note = getattr(e, "resume_note", None)
    if note:
        return f" {note}"
    resumable = [f for f in folders if f.can_resume]
    if not resumable:
        return ""
    where = ", ".join(str(f.out) for f in resumable)
    return f"; the finished work in {where} is kept; continue with the same command and --resume"
