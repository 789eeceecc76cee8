"""`negenc demo`: the main job on the embedded testbed, ending with the drop-in measured on the world."""

from __future__ import annotations

import argparse


def demo_command_parser(subparsers) -> argparse.ArgumentParser:
    from negation_testbed.recipes import TARGETS

    p = subparsers.add_parser("demo", help="run the whole method on the offline testbed and print before/after")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--recipe", default="default", help="fine-tuning recipe (see `negenc testbed recipes`)")
    p.add_argument("--seed", type=int, default=0, help="seed for data generation and fine-tuning")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's optimizer steps")
    p.add_argument("--scenes", type=int, default=6000, help="training scenes in the world")
    p.add_argument("--overwrite", action="store_true", help="replace the demo results already in --out")
    p.add_argument("--target", default=None, choices=tuple(TARGETS),
                   help="train for this model's reading of the text tower: if (the IF-style world generator, masked "
                        "states), sd (SD-style: 77 unmasked states), sdxl (SDXL-style: penultimate states + projected "
                        "pooled), clipseg (the projected pooled output; no states terms). Default: the recipe's own "
                        "(the default recipe's: if)")
    p.add_argument("--no-drop-in", action="store_true", help="skip the last step: the fine-tuned encoder swapped "
                   "into the world's frozen segmenter and generator")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=demo_command)
    return p


def demo_command(args: argparse.Namespace) -> int:
    from negation_testbed.demo import run_demo

    run_demo(args.out, recipe=args.recipe, seed=args.seed, steps=args.steps, n_scenes=args.scenes,
             overwrite=args.overwrite, progress=not args.no_progress, drop_in=not args.no_drop_in,
             target=args.target)
    return 0
