"""`negenc seg {eval,compare}`: CLIPSeg referring segmentation (mIoU / IoU_BIN), original or swapped.

A thin skin over `eval_seg.run(SegEvalConfig)`: the flags are built from `SegEvalConfig` and
`eval_seg.DatasetConfig`, so the CLI and the Python API accept and refuse the same values.
"""

from __future__ import annotations

import argparse


def seg_command_parser(subparsers) -> argparse.ArgumentParser:
    from eval_seg.datasets import DatasetConfig
    from eval_seg.runner import SegEvalConfig

    from ..configs import add_config_arguments

    parser = subparsers.add_parser("seg", help="referring segmentation with CLIPSeg: mIoU / IoU_BIN, original vs swapped")
    parser.set_defaults(_group_parser=parser)
    sub = parser.add_subparsers(title="seg commands", metavar="COMMAND", parser_class=type(parser))
    for name, help_text in (("eval", "evaluate one CLIPSeg (original, or swapped with --encoder)"),
                            ("compare", "original vs swapped CLIPSeg on the same samples, paired bootstrap interval")):
        c = sub.add_parser(name, help=help_text)
        add_config_arguments(c, DatasetConfig)
        add_config_arguments(c, SegEvalConfig, skip=() if name == "compare" else ("resamples",))
        c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        c.set_defaults(func=seg_command, command=name)
    return parser


def seg_command(args: argparse.Namespace) -> int:
    from eval_seg.datasets import DatasetConfig
    from eval_seg.runner import SegEvalConfig, run

    from ..configs import config_from_args
    from ..distributed import processes

    cfg = config_from_args(SegEvalConfig, args, dataset=config_from_args(DatasetConfig, args),
                           progress=not args.no_progress)
    r = run(cfg)
    if not processes().is_main:  # under a launcher every process ran; one reports
        return 0
    if cfg.command == "compare":
        c = r.comparison
        print(f"{cfg.out}: mIoU@0.3 original {c['original_miou_0.3']:.4f} -> swapped {c['swapped_miou_0.3']:.4f}; "
              f"paired IoU@0.3 difference {c['paired_iou_0.3_mean_diff']:+.4f} "
              f"[{c['paired_iou_0.3_ci_low']:+.4f}, {c['paired_iou_0.3_ci_high']:+.4f}] over {c['paired_n']} samples")
    else:
        m = r.metrics
        print(f"{r.out}: {m['n_samples']} samples ({r.computed} computed, {r.reused} resumed); "
              f"mIoU@0.3 {m['miou_0.3']:.4f}, fgIoU@0.3 {m['fgiou_0.3']:.4f}, IoU_BIN@0.3 {m['iou_bin_0.3']:.4f}, "
              f"AP {m['ap']:.4f}")
    return 0
