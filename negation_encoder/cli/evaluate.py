"""`negenc eval`: the papers' encoder benchmarks on their released files -> eval_results.json.

Every file path defaults to the layout under --data-root (see the README) and can be overridden;
relative overrides are read under --data-root. Bad input (absent file, malformed row, missing image)
stops before any compute with one line naming the file and row, unless --skip-missing is given.
"""

from __future__ import annotations

import argparse

from ..eval.paths import DEFAULT_LAYOUT

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
    from ..configs import add_config_arguments
    from ..eval.runner import EvalConfig

    p = subparsers.add_parser("eval", help="encoder benchmarks on the papers' real files -> eval_results.json",
                              description=__doc__.splitlines()[0], allow_abbrev=False)
    add_config_arguments(p, EvalConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    for flag, bench, what in PATH_FLAGS:
        default = DEFAULT_LAYOUT[bench][what]
        kind = "image folder" if what == "images" else "file"
        p.add_argument(flag, default=None, help=f"{bench} {kind} (default DATA_ROOT/{default})")
    p.set_defaults(func=eval_command)
    return p


def eval_command(args: argparse.Namespace) -> int:
    from ..configs import config_from_args
    from ..distributed import processes
    from ..eval.runner import EvalConfig, run_eval

    overrides: dict[str, dict[str, str | None]] = {}
    for flag, bench, what in PATH_FLAGS:
        overrides.setdefault(bench, {})[what] = getattr(args, _dest(flag))
    cfg = config_from_args(EvalConfig, args, overrides=overrides, progress=not args.no_progress)
    results = run_eval(cfg)
    skipped = sum(results["meta"]["skipped"].values())
    if not processes().is_main:  # under a launcher every process ran; one reports
        return 0
    print(f"wrote {cfg.out / 'eval_results.json'}, {cfg.out / 'summary.md'} and {cfg.out / 'predictions'}/"
          + (f" ({skipped} rows skipped)" if skipped else "")
          + (f" (skipped: {', '.join(results['meta']['skipped_benchmarks'])})" if results["meta"]["skipped_benchmarks"]
             else ""))
    return 0
