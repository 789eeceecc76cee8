"""`negenc data ...`: validate and merge NegationRecord files."""

from __future__ import annotations

import argparse

from ..data import RecordError, summarize_records
from ..errors import InputError


def data_command_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="validate and merge NegationRecord JSONL files")
    parser.set_defaults(_group_parser=parser)
    sub = parser.add_subparsers(title="data commands", metavar="COMMAND", parser_class=type(parser))
    v = sub.add_parser("validate", help="check every record; print counts per source and negation type")
    v.add_argument("file", help="a NegationRecord .jsonl file")
    v.add_argument("--tokenizer", default=None,
                   help="CLIP tokenizer (folder or Hub id) for exact 77-token checks; without it a lower bound "
                        "(CLIP's pre-tokenizer pieces) catches texts that are certainly too long")
    v.set_defaults(func=validate_command)
    m = sub.add_parser("merge", help="join shard outputs into one file, dropping duplicate ids")
    m.add_argument("out", help="merged .jsonl: its records are kept and new ones added (written atomically)")
    m.add_argument("inputs", nargs="+", help="shard .jsonl files")
    m.set_defaults(func=merge_command)
    return parser


def validate_command(args: argparse.Namespace) -> int:
    tokenizer = None
    if args.tokenizer:
        from transformers import CLIPTokenizer

        from ..checkpoint.sources import check_source_exists

        check_source_exists(args.tokenizer, "--tokenizer")  # a mistyped folder: at once, not after Hub retries
        try:
            tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
        except (OSError, ValueError) as e:
            raise InputError(f"--tokenizer {args.tokenizer}: cannot load a CLIP tokenizer "
                             f"({str(e).splitlines()[0]})") from None
    try:
        summary = summarize_records(args.file, tokenizer=tokenizer)
    except RecordError as e:
        raise InputError(str(e)) from None
    how = f"tokens counted with {args.tokenizer}" if tokenizer else "token counts are lower bounds (see --tokenizer)"
    print(f"{args.file}: {summary.total} valid records ({how})")
    print(summary.to_table())
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from ..data.shards import merge_shards

    r = merge_shards(args.inputs, args.out)
    print(f"{args.out}: merged {r.inputs} files, {r.records_in} records read, {r.written} written, "
          f"{r.duplicates} duplicate ids dropped")
    return 0
