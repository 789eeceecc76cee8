"""`negenc data ...`: validate and merge NegationRecord files; report what omit_states trains on."""

from __future__ import annotations

import argparse

from ..data import RecordError, summarize_records
from ..errors import InputError


def data_command_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="validate and merge NegationRecord files; omit_states pairs")
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
    o = sub.add_parser("omit-pairs", help="per record, what the omit_states term trains on (the true caption and the "
                                          "splitter's affirmative part), or why it skips the record")
    o.add_argument("file", metavar="IN", help="a NegationRecord .jsonl file")
    o.add_argument("out", metavar="OUT", help="report .jsonl, one line per record (appended; resumable)")
    o.add_argument("--types", default="", help="comma list of negation types, as objective.omit_states.types (the "
                                              "default recipe trains on absence); empty: every type")
    o.add_argument("--shard", default="0/1", help="i/n: only this deterministic share of the records")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    o.set_defaults(func=omit_pairs_command)
    return parser


def _records_in(path: str, out: str, shard: str) -> list:
    """The input's records (every line checked) in this shard; `out` must be another file."""
    from pathlib import Path

    from ..data import read_records
    from ..data.shards import parse_shard, shard_items

    index, count = parse_shard(shard)
    if Path(out).is_dir():
        raise InputError(f"{out}: is a folder, expected a .jsonl file path")
    if Path(out).resolve() == Path(path).resolve():
        raise InputError(f"{out}: the output cannot be the input file (write to another file)")
    try:
        records = read_records(path)
    except RecordError as e:
        raise InputError(str(e)) from None
    return shard_items(records, index, count)


def omit_pairs_command(args: argparse.Namespace) -> int:
    from ..data.pipelines import PipelineStats, run_items
    from ..training.omit_report import OmitPairs, OmitPairWriter

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    pairs = OmitPairs(types)  # refuses unknown types as the term's config does
    records = _records_in(args.file, args.out, args.shard)
    stats = PipelineStats("omit-pairs")

    def rows(batch):
        out = [pairs.pair(rec) for rec in batch]
        for row in out:
            if row.trains:
                stats.stages["trains"] += 1
            else:
                stats.rejects["skipped:" + row.skipped.split(":", 1)[0]] += 1
        return out

    run_items(records, args.out, 256, rows, stats, progress=not args.no_progress, writer=OmitPairWriter)
    skipped = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(stats.rejects.items())) or "none"
    print(f"{args.out}: omit_states trains on {stats.stages['trains']} of the {len(records) - stats.items_skipped_done} "
          f"records this run read (types: {', '.join(types) or 'every'}); skipped: {skipped}. No separate file is "
          "needed: the term reads the records themselves.")
    return 0


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
