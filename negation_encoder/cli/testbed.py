"""`negenc testbed ...`: regenerate the world's committed base model; list recipes."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path


def testbed_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("testbed", help="the offline world: pretrain its base CLIP, list recipes")
    p.set_defaults(_group_parser=p)
    sub = p.add_subparsers(title="testbed commands", metavar="COMMAND", parser_class=type(p))
    pt = sub.add_parser("pretrain", help="regenerate the committed base CLIP deterministically")
    pt.add_argument("--out", default=None, help="folder (default: the committed negation_testbed/assets/base)")
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
    for name, what in (("pretrain-t2i", "the world's text-to-image pipeline (UNet trained with the base encoder)"),
                       ("pretrain-seg", "the world's CLIPSeg (decoder trained with the base CLIP)"),
                       ("pretrain-judge", "the world's VQA judge (a small CNN on world annotations)")):
        pp = sub.add_parser(name, help=f"regenerate {what} deterministically")
        pp.add_argument("--out", default=None, help="folder (default: the package's committed asset)")
        pp.add_argument("--steps", type=int, default=None, help="override the training steps")
        pp.add_argument("--seed", type=int, default=0, help="seed of the run")
        pp.set_defaults(func=pretrain_asset_command, asset=name.split("-")[1])
    tc = sub.add_parser("t2i-compare", help="Neg Score of the world generator: base, negative prompt, swapped encoder(s)")
    _transfer_args(tc, "t2i_compare_out")
    tc.add_argument("--seeds", default="0,1,2,3,4", help="comma list of seeds (every arm uses the same)")
    tc.add_argument("--forms", type=int, default=2, help="negated prompts per object kind (1-3; 16 kinds)")
    tc.add_argument("--limit", type=int, default=None, help="only the first N prompts (smoke runs)")
    tc.add_argument("--steps", type=int, default=50, help="denoising steps")
    tc.add_argument("--guidance-scale", type=float, default=4.0, help="classifier-free guidance scale")
    tc.add_argument("--batch-size", type=int, default=16, help="images per pipeline call")
    tc.add_argument("--pipeline", default=None, help="pipeline folder (default: the committed world generator)")
    tc.add_argument("--judge", default=None, help="judge folder (default: the committed world judge)")
    tc.set_defaults(func=t2i_compare_command)
    sc = sub.add_parser("seg-compare", help="mIoU / IoU_BIN of the world CLIPSeg, original vs swapped encoder(s)")
    _transfer_args(sc, "seg_compare_out")
    sc.add_argument("--samples", type=int, default=400, help="referring expressions per set (negated, control)")
    sc.add_argument("--seed", type=int, default=0, help="seed of the referring sets and the bootstrap")
    sc.add_argument("--batch-size", type=int, default=32, help="samples per CLIPSeg call")
    sc.add_argument("--model", default=None, help="CLIPSeg folder (default: the committed world segmenter)")
    sc.set_defaults(func=seg_compare_command)
    return p


def _transfer_args(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--encoder", action="append", required=True, metavar="PATH",
                   help="a fine-tuned encoder folder (<out>/run/model of `negenc demo`); repeatable")
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--resume", action="store_true", help="continue a run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# asset -> (module, default folder, config class, trainer): the three world models the drop-in runs on
_ASSETS = {"t2i": ("world_t2i", "T2I_DIR", "T2IConfig", "pretrain_t2i"),
           "seg": ("world_seg", "SEG_DIR", "SegConfig", "pretrain_seg"),
           "judge": ("world_judge", "JUDGE_DIR", "JudgeConfig", "pretrain_judge")}


def pretrain_asset_command(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        from ..errors import InputError

        raise InputError(f"--steps must be >= 1, got {args.steps}")
    module, folder, config, trainer = _ASSETS[args.asset]
    mod = importlib.import_module(f"negation_testbed.{module}")
    default, Config, run = getattr(mod, folder), getattr(mod, config), getattr(mod, trainer)
    cfg = Config(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    info = run(cfg, out=args.out or default)
    print(json.dumps(info, indent=2))
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    from ..errors import InputError

    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--seeds expects a comma list of integers, got {text!r}") from None
    if not seeds:
        raise InputError(f"--seeds expects at least one integer, got {text!r}")
    return seeds


def t2i_compare_command(args: argparse.Namespace) -> int:
    from negation_testbed.transfer import T2ICompareConfig, t2i_compare

    cfg = T2ICompareConfig(encoders=args.encoder, out=args.out, seeds=_seeds(args.seeds), forms=args.forms,
                           limit=args.limit, steps=args.steps, guidance_scale=args.guidance_scale,
                           batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.no_progress)
    if args.pipeline:
        cfg.pipeline = args.pipeline
    if args.judge:
        cfg.judge = args.judge
    t2i_compare(cfg)
    print((Path(args.out) / "report.md").read_text())
    return 0


def seg_compare_command(args: argparse.Namespace) -> int:
    from negation_testbed.transfer import SegCompareConfig, seg_compare

    cfg = SegCompareConfig(encoders=args.encoder, out=args.out, samples=args.samples, seed=args.seed,
                           batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.no_progress)
    if args.model:
        cfg.model = args.model
    seg_compare(cfg)
    print((Path(args.out) / "report.md").read_text())
    return 0


def pretrain_command(args: argparse.Namespace) -> int:
    from negation_testbed.pretrain import BASE_DIR, PretrainConfig, pretrain

    cfg = PretrainConfig(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    info = pretrain(cfg, out=args.out or BASE_DIR)
    print(json.dumps(info, indent=2))
    return 0


def recipes_command(args: argparse.Namespace) -> int:
    from negation_testbed.recipes import RECIPES

    for r in RECIPES.values():
        print(f"{r.name:22s} data={'+'.join(r.sources):18s} {r.description}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from negation_testbed.compare import compare

    from ..errors import InputError
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
