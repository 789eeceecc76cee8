"""`negenc eval`: the papers' encoder benchmarks on their released files -> eval_results.json.

Every file path defaults to the layout under --data-root (see the README) and can be overridden;
relative overrides are read under --data-root. Bad input (absent file, malformed row, missing image)
stops before any compute with one line naming the file and row, unless --skip-missing is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..eval.paths import BENCHMARKS, DEFAULT_LAYOUT

# (flag, bench, layout field): per-file overrides of the default layout
PATH_FLAGS = (
    ("--valse-file", "valse", "file"), ("--valse-images", "valse", "images"),
    ("--negrefcocog-file", "negrefcocog", "file"), ("--negrefcocog-images", "negrefcocog", "images"),
    ("--negbench-mcq-coco-file", "negbench-mcq-coco", "file"),
    ("--negbench-mcq-coco-images", "negbench-mcq-coco", "images"),
    ("--negbench-mcq-voc-file", "negbench-mcq-voc", "file"), ("--negbench-mcq-voc-images", "negbench-mcq-voc", "images"),
    ("--negbench-negated-file", "negbench-retrieval", "file"),
    ("--negbench-plain-file", "negbench-retrieval", "plain_file"),
    ("--negbench-retrieval-images", "negbench-retrieval", "images"),
    ("--coco-karpathy-file", "coco-retrieval", "file"), ("--coco-images", "coco-retrieval", "images"),
    ("--imagenet-classnames", "zeroshot", "file"), ("--imagenet-val", "zeroshot", "images"),
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def eval_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="encoder benchmarks on the papers' real files -> eval_results.json",
                              description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--model", required=True, help="CLIPModel folder (e.g. <train out>/model) or Hub model id")
    p.add_argument("--bench", required=True,
                   help=f"comma-separated benchmarks: {','.join(BENCHMARKS)}")
    p.add_argument("--data-root", required=True, help="folder holding the benchmarks' files in the default layout")
    p.add_argument("--out", required=True, help="output folder: eval_results.json, predictions/, summary.md")
    p.add_argument("--split-scoring", action="store_true",
                   help="score captions with the split scorer (affirmative part minus w x negated concepts)")
    p.add_argument("--split-weight", type=float, default=None,
                   help="w for --split-scoring, fitted on training data (never on benchmark items)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip missing images, malformed rows and absent files (counted in the results) instead of "
                        "stopping with exit 2")
    p.add_argument("--batch-size", type=int, default=64, help="images / texts per forward pass (default 64)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 or cpu (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="text-tower precision on GPU (auto = fp16); image embeddings follow the training cache's "
                        "rule (fp16 on GPU, fp32 on CPU)")
    p.add_argument("--cache-dir", default=None,
                   help="image-embedding cache root (default OUT/image_cache); one subfolder per model fingerprint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    for flag, bench, what in PATH_FLAGS:
        default = DEFAULT_LAYOUT[bench][what]
        kind = "image folder" if what == "images" else "file"
        p.add_argument(flag, default=None, help=f"{bench} {kind} (default DATA_ROOT/{default})")
    p.set_defaults(func=eval_command)
    return p


def eval_command(args: argparse.Namespace) -> int:
    from ..eval.runner import EvalConfig, parse_benches, run_eval

    overrides: dict[str, dict[str, str | None]] = {}
    for flag, bench, what in PATH_FLAGS:
        overrides.setdefault(bench, {})[what] = getattr(args, _dest(flag))
    cfg = EvalConfig(
        model=args.model, benches=parse_benches(args.bench), data_root=Path(args.data_root).expanduser(),
        out=Path(args.out).expanduser(), overrides=overrides, split_scoring=args.split_scoring,
        split_weight=args.split_weight, skip_missing=args.skip_missing, batch_size=args.batch_size,
        device=args.device, dtype=args.dtype, progress=not args.no_progress,
        cache_dir=Path(args.cache_dir).expanduser() if args.cache_dir else None,
    )
    results = run_eval(cfg)
    skipped = sum(results["meta"]["skipped"].values())
    print(f"wrote {cfg.out / 'eval_results.json'}, {cfg.out / 'summary.md'} and {cfg.out / 'predictions'}/"
          + (f" ({skipped} rows skipped)" if skipped else "")
          + (f" (skipped: {', '.join(results['meta']['skipped_benchmarks'])})" if results["meta"]["skipped_benchmarks"]
             else ""))
    return 0
