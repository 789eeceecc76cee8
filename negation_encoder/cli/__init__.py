"""`negenc`: a thin command line over the public API.

Each subcommand module exports `<name>_command_parser(subparsers)`, which registers its parser and
sets `func`. `main(argv)` is callable in-process, so tests run commands without a shell.
Exit codes: 0 ok, 1 a failed run, 2 bad input (one line on stderr naming the culprit).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError, RunFailed


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
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"negenc: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"negenc: run failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("negenc: interrupted", file=sys.stderr)
        return 130
