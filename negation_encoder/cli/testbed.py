"""`negenc testbed ...`: regenerate the world's committed base model; list recipes."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path


def testbed_command_parser(subparsers) -> argparse.ArgumentParser:
    from ..configs import _comma_list, add_config_arguments

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
    cp.add_argument("--resume", action="store_true",
                    help="continue the comparison in --out: finished runs are reused, an unfinished one continues "
                         "from its last checkpoint, new recipes or seeds are run (same --steps/--scenes/--bench-size)")
    cp.add_argument("--no-transfer", dest="transfer", action="store_false",
                    help="skip the transfer columns (each encoder swapped into the world's frozen segmenter and "
                         "generator, the demo's drop-in measurement)")
    cp.add_argument("--no-progress", action="store_true", help="no progress bars (data generation, runs)")
    cp.set_defaults(func=compare_command)
    for name, what in (("pretrain-t2i", "the world's text-to-image pipeline (UNet trained with the base encoder)"),
                       ("pretrain-seg", "the world's CLIPSeg (decoder trained with the base CLIP)"),
                       ("pretrain-judge", "the world's VQA judge (a small CNN on world annotations)")):
        pp = sub.add_parser(name, help=f"regenerate {what} deterministically")
        pp.add_argument("--out", default=None, help="folder (default: the package's committed asset)")
        pp.add_argument("--steps", type=int, default=None, help="override the training steps")
        pp.add_argument("--seed", type=int, default=0, help="seed of the run")
        if name == "pretrain-t2i":
            pp.add_argument("--kind", choices=("if", "sd", "sdxl"), default="if",
                            help="if: pixel-space IFPipeline reading masked states (the default world generator); "
                                 "sd: latent StableDiffusionPipeline reading 77 unmasked states; sdxl: latent "
                                 "StableDiffusionXLPipeline reading two towers' penultimate states and pooled output")
            pp.add_argument("--vae", default=None, help="with --kind sd|sdxl: reuse this trained world VAE folder "
                            "(e.g. negation_testbed/assets/t2i_sd/vae) instead of training one")
            pp.add_argument("--sampling-prompts", type=int, default=None,
                            help="validation prompts that choose the saved sampling steps and guidance after "
                                 "training (default 64; 0: keep the config's)")
            pp.add_argument("--snapshots", type=_comma_list("snapshots", (int,)), default=(), help="comma list of step counts: also save the EMA pipeline "
                            "after that many steps to <out>/step_<n> (choose a training length from one run)")
        pp.set_defaults(func=pretrain_asset_command, asset=name.split("-")[1])
    rp = sub.add_parser("report", help="regenerate the docs' result tables from docs/results/data/*.json "
                        "(stamped with the commit that produced them)")
    rp.add_argument("--data", default="docs/results/data", help="folder of result JSON files")
    rp.add_argument("--docs", default="docs/results", help="folder the pages are written to")
    rp.add_argument("--readme", default="README.md", help="README whose results block is regenerated")
    rp.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    rp.set_defaults(func=report_command)
    fr = sub.add_parser("fit-seg-route", help="fit the world segmenter's training-free split route on training "
                        "scenes (written beside its weights as negation_split_route.json)")
    fr.add_argument("--model", default=None, help="CLIPSeg folder (default: the committed world segmenter)")
    fr.add_argument("--samples", type=int, default=800, help="training referring expressions")
    fr.add_argument("--seed", type=int, default=1000, help="seed of the training scenes (seg-compare's sets use 0)")
    fr.set_defaults(func=fit_seg_route_command)
    ne = sub.add_parser("null-encoder", help="the world base CLIP with seeded noise on its text tower: an encoder "
                        "that moves the token states and no meaning, to measure what a drift that size costs a "
                        "generator's control prompts (t2i-compare --encoder)")
    ne.add_argument("--out", required=True, help="encoder folder to write")
    ne.add_argument("--scale", type=float, default=0.3, help="noise per weight matrix, in units of its own std")
    ne.add_argument("--seed", type=int, default=0, help="noise seed")
    ne.add_argument("--base", default=None, help="CLIP folder (default: the committed world base)")
    ne.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ne.set_defaults(func=null_encoder_command)
    from negation_testbed.drop_in.seg_compare import SegCompareConfig
    from negation_testbed.drop_in.t2i_compare import T2ICompareConfig

    for name, help_text, cls, func in (
            ("t2i-compare", "Neg Score of the world generator: base, negative prompt, swapped encoder(s)",
             T2ICompareConfig, t2i_compare_command),
            ("seg-compare", "mIoU / IoU_BIN of the world CLIPSeg: original, swapped encoder(s), split route",
             SegCompareConfig, seg_compare_command)):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--encoder", action="append", required=True, metavar="PATH", dest="encoders",
                       help="a fine-tuned encoder folder (<out>/run/model of `negenc demo`); repeatable")
        add_config_arguments(c, cls, skip=("encoders",))
        c.add_argument("--no-progress", action="store_true", help="no progress bars")
        c.set_defaults(func=func)
    return p


def report_command(args: argparse.Namespace) -> int:
    from negation_testbed.reports import report

    from ..errors import InputError

    if not Path(args.data).is_dir():
        raise InputError(f"--data {args.data}: not a folder of result files")
    stale = report(args.data, args.docs, args.readme, check=args.check)
    if args.check and stale:
        print("stale (run `negenc testbed report`): " + ", ".join(stale))
        return 1
    print("up to date" if args.check else f"wrote {len(stale)} changed file(s): " + ", ".join(stale))
    return 0


def null_encoder_command(args: argparse.Namespace) -> int:
    from negation_testbed.drop_in.null_encoder import write_null_encoder
    from negation_testbed.instruments.base_clip import BASE_DIR

    out = write_null_encoder(args.base or BASE_DIR, args.out, args.scale, args.seed, overwrite=args.overwrite)
    print(f"null encoder (scale {args.scale}, seed {args.seed}): {out}")
    return 0


def fit_seg_route_command(args: argparse.Namespace) -> int:
    from negation_testbed.drop_in.seg_compare import fit_seg_route
    from negation_testbed.instruments.segmenter import SEG_DIR

    from ..errors import InputError

    if args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    route = fit_seg_route(args.model or SEG_DIR, samples=args.samples, seed=args.seed)
    print(json.dumps({"weight": route.weight, "concept_template": route.concept_template, "fit": route.fit}, indent=2))
    return 0


# asset -> (module, default folder, config class, trainer): the three world models the drop-in runs on
_ASSETS = {"t2i": ("instruments.generator", "T2I_DIR", "GeneratorConfig", "pretrain_t2i"),
           "seg": ("instruments.segmenter", "SEG_DIR", "SegConfig", "pretrain_seg"),
           "judge": ("instruments.judge", "JUDGE_DIR", "JudgeConfig", "pretrain_judge")}

_LATENT = {k: ("instruments.latent_generator", f"{k.upper()}_DIR", "LatentGeneratorConfig", "pretrain_latent_t2i")
           for k in ("sd", "sdxl")}


def pretrain_asset_command(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        from ..errors import InputError

        raise InputError(f"--steps must be >= 1, got {args.steps}")
    kind = getattr(args, "kind", "if")
    if getattr(args, "vae", None) and kind == "if":
        from ..errors import InputError

        raise InputError("--vae: only a latent generator (--kind sd or sdxl) has a VAE")
    module, folder, config, trainer = _ASSETS[args.asset] if kind == "if" else _LATENT[kind]
    mod = importlib.import_module(f"negation_testbed.{module}")
    default, Config, run = getattr(mod, folder), getattr(mod, config), getattr(mod, trainer)
    cfg = Config(seed=args.seed) if kind == "if" else Config(seed=args.seed, kind=kind, vae=args.vae)
    if args.steps:
        cfg.steps = args.steps
    if getattr(args, "sampling_prompts", None) is not None:
        if args.sampling_prompts < 0:
            from ..errors import InputError

            raise InputError(f"--sampling-prompts must be >= 0, got {args.sampling_prompts}")
        cfg.sampling_prompts = args.sampling_prompts
    snapshots = _check_snapshots(getattr(args, "snapshots", ()), cfg.steps)
    info = run(cfg, out=args.out or default, **({"snapshots": snapshots} if snapshots else {}))
    print(json.dumps(info, indent=2))
    return 0


def _check_snapshots(values: tuple[int, ...], steps: int) -> tuple[int, ...]:
    """Each `--snapshots` step count must lie in 1..steps-1 (the last step is the run itself)."""
    bad = [v for v in values if not 1 <= v < steps]
    if bad:
        from ..errors import InputError

        raise InputError(f"--snapshots must lie in 1..{steps - 1} (the run has {steps} steps), got {bad[0]}")
    return tuple(values)


def t2i_compare_command(args: argparse.Namespace) -> int:
    from negation_testbed.drop_in.t2i_compare import T2ICompareConfig, t2i_compare

    from ..configs import config_from_args

    cfg = config_from_args(T2ICompareConfig, args, progress=not args.no_progress)
    t2i_compare(cfg)
    print((Path(cfg.out) / "report.md").read_text())
    return 0


def seg_compare_command(args: argparse.Namespace) -> int:
    from negation_testbed.drop_in.seg_compare import SegCompareConfig, seg_compare

    from ..configs import config_from_args

    cfg = config_from_args(SegCompareConfig, args, progress=not args.no_progress)
    seg_compare(cfg)
    print((Path(cfg.out) / "report.md").read_text())
    return 0


def pretrain_command(args: argparse.Namespace) -> int:
    from negation_testbed.instruments.base_clip import BASE_DIR, PretrainConfig, pretrain

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
    from .progress import silence_library_bars

    # compare shows its own bars (data generation, one over the runs) and prints one line per run; the
    # libraries' save/load bars would drown those lines, so they are always silenced
    silence_library_bars()
    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x)
    except ValueError:
        raise InputError(f"--seeds expects a comma list of integers, got {args.seeds!r}") from None
    recipes = [r for r in args.recipes.split(",") if r] if args.recipes else None
    compare(args.out, recipes, seeds, n_scenes=args.scenes, steps=args.steps, bench_size=args.bench_size,
            overwrite=args.overwrite, resume=args.resume, transfer=args.transfer,
            progress=not args.no_progress)
    return 0
