"""`negenc data ...`: validate and merge NegationRecord files; add counterfactual images; report what
omit_states trains on."""

from __future__ import annotations

import argparse

from ..data import RecordError, summarize_records
from ..errors import InputError


def data_command_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="validate and merge NegationRecord files; counterfactual images; omit_states pairs")
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
    c = sub.add_parser("counterfactuals", help="add COCO images that contain each absence record's negated concept "
                                               "(distractor_images, for the distractor term)")
    c.add_argument("file", metavar="IN", help="a NegationRecord .jsonl file")
    c.add_argument("out", metavar="OUT", help="the records with distractor_images added (appended; resumable)")
    c.add_argument("--instances", required=True, help="COCO instances_train2014.json (or 2017) of the images to mine")
    c.add_argument("--images", default=None, help="image folder: keep only images present there (default: every "
                                                 "image the instances file lists)")
    c.add_argument("--k", type=int, default=2, help="distractor images per record (the distractor term reads up to "
                                                    "objective.distractor.max_images)")
    c.add_argument("--replace", action="store_true", help="replace distractor_images a record already has")
    c.add_argument("--shard", default="0/1", help="i/n: only this deterministic share of the records")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=counterfactuals_command)
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


def counterfactuals_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.distractors import AnnotationDistractorMiner, load_coco_instances, run_counterfactuals

    if args.k < 1:
        raise InputError(f"--k must be >= 1, got {args.k}")
    records = _records_in(args.file, args.out, args.shard)
    categories = load_coco_instances(args.instances)
    vocabulary = {c for cats in categories.values() for c in cats}  # a concept is a category even if --images lacks it
    if args.images:
        root = Path(args.images)
        if not root.is_dir():
            raise InputError(f"--images {root}: not a folder")
        categories = {img: c for img, c in categories.items() if (root / img).is_file()}
        if not categories:
            raise InputError(f"--images {root}: none of the images of {args.instances} is there")
    stats = run_counterfactuals(records, args.out, AnnotationDistractorMiner(categories), k=args.k,
                                replace=args.replace, progress=not args.no_progress, vocabulary=vocabulary)
    s = stats.stages
    print(f"{args.out}: {s['records_with_distractors']} records got {s['distractor_images']} distractor images; "
          f"{stats.records_written} records written ({stats.items_skipped_done} done before); no image found: "
          f"{stats.rejects['no_image_with_the_concept']}, concept not a category: "
          f"{stats.rejects['concept_not_a_category']}")
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
