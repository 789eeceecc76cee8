"""`negenc testbed ...`: regenerate the world's committed base model; list recipes."""

from __future__ import annotations

import argparse
import json


def testbed_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("testbed", help="the offline world: pretrain its base CLIP, list recipes")
    p.set_defaults(_group_parser=p)
    sub = p.add_subparsers(title="testbed commands", metavar="COMMAND", parser_class=type(p))
    pt = sub.add_parser("pretrain", help="regenerate the committed base CLIP deterministically")
    pt.add_argument("--out", default=None, help="folder (default: the package's testbed/assets/base)")
    pt.add_argument("--steps", type=int, default=None, help="override the pretraining steps")
    pt.add_argument("--seed", type=int, default=0, help="seed of the pretraining run")
    pt.set_defaults(func=pretrain_command)
    rc = sub.add_parser("recipes", help="list fine-tuning recipes")
    rc.set_defaults(func=recipes_command)
    cp = sub.add_parser("compare", help="train every recipe on the same data, several seeds; one table")
    cp.add_argument("--out", default="compare_out", help="output folder (default: compare_out)")
    cp.add_argument("--recipes", default=None, help="comma list (default: all)")
    cp.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    cp.add_argument("--steps", type=int, default=None, help="override every recipe's steps")
    cp.add_argument("--scenes", type=int, default=6000, help="training scenes in the world")
    cp.add_argument("--bench-size", type=int, default=500, help="items per benchmark twin")
    cp.add_argument("--overwrite", action="store_true", help="replace a comparison already in --out")
    cp.set_defaults(func=compare_command)
    return p


def pretrain_command(args: argparse.Namespace) -> int:
    from ..testbed.pretrain import BASE_DIR, PretrainConfig, pretrain

    cfg = PretrainConfig(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    info = pretrain(cfg, out=args.out or BASE_DIR)
    print(json.dumps(info, indent=2))
    return 0


def recipes_command(args: argparse.Namespace) -> int:
    from ..testbed.recipes import RECIPES

    for r in RECIPES.values():
        print(f"{r.name:22s} data={'+'.join(r.sources):18s} {r.description}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..testbed.compare import compare
    from .progress import silence_progress

    silence_progress()  # compare prints one line per run; the libraries' save/load bars would drown them
    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x)
    except ValueError:
        raise InputError(f"--seeds expects a comma list of integers, got {args.seeds!r}") from None
    recipes = [r for r in args.recipes.split(",") if r] if args.recipes else None
    compare(args.out, recipes, seeds, n_scenes=args.scenes, steps=args.steps, bench_size=args.bench_size,
            overwrite=args.overwrite)
    return 0
