"""`negenc train`: fine-tune a CLIP text encoder on NegationRecord data (accelerate)."""

from __future__ import annotations

import argparse


def train_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="fine-tune a text encoder (accelerate launch -m negation_encoder.cli train ...)")
    p.add_argument("--config", help="TrainConfig as JSON or YAML")
    p.add_argument("--base", help="CLIPModel folder or Hub id")
    p.add_argument("--data", nargs="+", help="NegationRecord .jsonl file(s)")
    p.add_argument("--images", help="image root the records' paths are relative to")
    p.add_argument("--out", help="output folder (checkpoints/, train_log.jsonl, model/)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=train_command)
    return p


def train_command(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, train

    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in (("base", args.base), ("data", args.data), ("images", args.images),
                                   ("out", args.out)) if v}
    cfg = cfg.override(overrides).override(args.set)
    result = train(cfg, resume=args.resume, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s -> {result.out / 'model'}")
    return 0
