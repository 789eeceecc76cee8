"""`negenc seg {eval,compare}`: CLIPSeg referring segmentation (mIoU / IoU_BIN), original or swapped."""

from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser, encoder_required: bool) -> None:
    p.add_argument("--dataset", required=True, choices=("refcocog", "phrasecut", "jsonl"),
                   help="annotation format of the data")
    p.add_argument("--refs", help="RefCOCOg: the refs(umd).p pickle")
    p.add_argument("--instances", help="RefCOCOg: COCO-style instances.json with the masks")
    p.add_argument("--split", default="test", help="RefCOCOg: split of refs(umd).p to use (default test)")
    p.add_argument("--refer", help="PhraseCut: refer_<split>.json")
    p.add_argument("--image-data", help="PhraseCut: image_data_<split>.json (image sizes)")
    p.add_argument("--jsonl", help="jsonl: file of {image, text, mask} lines (mask: PNG, nonzero = foreground)")
    p.add_argument("--images", help="image root (RefCOCOg: COCO train2014; PhraseCut: its images folder; "
                                    "jsonl: defaults to the file's folder)")
    p.add_argument("--negation-only", action="store_true", help="keep only phrases with a negation cue")
    p.add_argument("--cues", help="comma-separated negation cues for --negation-only (default: the project's list)")
    p.add_argument("--model", default="CIDAS/clipseg-rd64-refined", help="CLIPSeg folder or Hub id")
    p.add_argument("--encoder", required=encoder_required,
                   help="negation encoder folder (a CLIPModel) to swap into CLIPSeg" +
                        ("" if encoder_required else "; omit to run the original CLIPSeg"))
    p.add_argument("--batch-size", type=int, default=8, help="samples per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="auto: fp16 on CUDA, fp32 on CPU")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples (after filtering)")
    p.add_argument("--out", required=True, help="output folder (samples.jsonl, metrics.json, summary.md, overlays.png)")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out without recomputing")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and the bootstrap (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def seg_command_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("seg", help="referring segmentation with CLIPSeg: mIoU / IoU_BIN, original vs swapped")
    parser.set_defaults(_group_parser=parser)
    sub = parser.add_subparsers(title="seg commands", metavar="COMMAND", parser_class=type(parser))
    e = sub.add_parser("eval", help="evaluate one CLIPSeg (original, or swapped with --encoder)")
    _common(e, encoder_required=False)
    e.set_defaults(func=eval_command)
    c = sub.add_parser("compare", help="original vs swapped CLIPSeg on the same samples, paired bootstrap interval")
    _common(c, encoder_required=True)
    c.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    c.set_defaults(func=compare_command)
    return parser


def _config(args: argparse.Namespace):
    from eval_seg.datasets import DatasetConfig
    from eval_seg.runner import SegEvalConfig

    from ..errors import InputError

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit: must be >= 1 when set, got {args.limit}")
    if args.cues and not args.negation_only:
        raise InputError("--cues: only used with --negation-only")
    data = DatasetConfig(kind=args.dataset, refs=args.refs, instances=args.instances, refer=args.refer,
                         image_data=args.image_data, jsonl=args.jsonl, images=args.images, split=args.split,
                         negation_only=args.negation_only, limit=args.limit)
    if args.cues:
        data.cues = tuple(c.strip() for c in args.cues.split(",") if c.strip())
    return SegEvalConfig(dataset=data, model=args.model, encoder=args.encoder, out=args.out,
                         batch_size=args.batch_size, device=args.device, dtype=args.dtype, resume=args.resume,
                         seed=args.seed, progress=not args.no_progress,
                         bootstrap=getattr(args, "bootstrap", 1000))


def eval_command(args: argparse.Namespace) -> int:
    from eval_seg.runner import evaluate

    r = evaluate(_config(args))
    m = r.metrics
    print(f"{r.out}: {m['n_samples']} samples ({r.computed} computed, {r.reused} resumed); "
          f"mIoU@0.3 {m['miou_0.3']:.4f}, fgIoU@0.3 {m['fgiou_0.3']:.4f}, IoU_BIN@0.3 {m['iou_bin_0.3']:.4f}, "
          f"AP {m['ap']:.4f}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from eval_seg.runner import compare

    cfg = _config(args)
    if cfg.bootstrap < 1:
        from ..errors import InputError

        raise InputError(f"--bootstrap: must be >= 1, got {cfg.bootstrap}")
    r = compare(cfg)
    c = r.comparison
    print(f"{cfg.out}: mIoU@0.3 original {c['original_miou_0.3']:.4f} -> swapped {c['swapped_miou_0.3']:.4f}; "
          f"paired IoU@0.3 difference {c['paired_iou_0.3_mean_diff']:+.4f} "
          f"[{c['paired_iou_0.3_ci_low']:+.4f}, {c['paired_iou_0.3_ci_high']:+.4f}] over {c['paired_n']} samples")
    return 0
