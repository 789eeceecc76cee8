"""`negenc train`: fine-tune a CLIP text encoder on NegationRecord data (accelerate)."""

from __future__ import annotations

import argparse


def train_command_parser(subparsers) -> argparse.ArgumentParser:
    from ..training.config import config_help

    p = subparsers.add_parser(
        "train", help="fine-tune a text encoder (accelerate launch -m negation_encoder.cli train ...)",
        description="Fine-tune the text encoder of a CLIPModel on NegationRecord data, vision frozen. The run's "
                    "settings come from --config (a JSON or YAML file of the grouped keys below: model, data, optim, "
                    "pipeline, objective, run), then the --base/--data/--images/--out flags, then --set overrides "
                    "(dotted keys: --set optim.lr=1e-5 objective.omit_states.weight=3).",
        epilog="config keys (type, default, meaning); objective.TERM is off unless listed with a weight > 0:\n"
               + config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TrainConfig as a JSON or YAML file of the keys listed below")
    p.add_argument("--base", help="CLIPModel folder or Hub id (config key `model.base`)")
    p.add_argument("--data", nargs="+", help="NegationRecord .jsonl file(s) (config key `data.files`)")
    p.add_argument("--images", help="image root the records' paths are relative to (config key `data.images`)")
    p.add_argument("--out", help="output folder: checkpoints/, train_log.jsonl, model/ (config key `run.out`)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the newest checkpoint in --out (refused if the config or data changed)")
    mode.add_argument("--overwrite", action="store_true", help="replace a run already in --out (its checkpoints, "
                      "log and model/ are deleted; the image cache is kept)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys by their dotted names (objective.TERM=W sets a term's weight)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--print-config", metavar="TARGET", default=None,
                   help="print a starter config (YAML) and exit: the drop-in recipe for a pipeline (sd1, sd2, sdxl, "
                        "sd3, flux, clipseg) or for retrieval, commented term by term; or a testbed recipe name "
                        "(`negenc testbed recipes`). Save it, edit model.base, data.files and data.images, pass "
                        "--config")
    p.set_defaults(func=train_command)
    return p


def train_command(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, train

    if args.print_config:
        print(print_config(args.print_config), end="")
        return 0
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in (("model.base", args.base), ("data.files", args.data), ("data.images", args.images),
                                   ("run.out", args.out)) if v}
    cfg = cfg.override(overrides, source="flags").override(args.set)
    result = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s -> {result.model_dir}")
    return 0


def print_config(name: str) -> str:
    """A target's commented starter (`training.starters`), or a testbed recipe as a config."""
    from ..training.starters import ALIASES, TARGETS, starter_text

    if name in TARGETS or name in ALIASES:
        return starter_text(name)
    return recipe_config(name).to_yaml()


def recipe_config(name: str):
    """A testbed recipe's TrainConfig, with the world's committed base and segmenter."""
    from negation_testbed.instruments.base_clip import BASE_DIR
    from negation_testbed.recipes import RECIPES

    from ..errors import InputError
    from ..training.starters import TARGETS

    if name not in RECIPES:
        raise InputError(f"--print-config: expected a target ({', '.join(TARGETS)}) or a testbed recipe "
                         f"({', '.join(RECIPES)}), got {name!r}")
    recipe = RECIPES[name]  # sized for the testbed's world CLIP, which it names as its base
    seg = {}
    if recipe.seg:  # trains through the world's frozen CLIPSeg on referring records (ReferringRecord JSONL)
        from negation_testbed.instruments.segmenter import SEG_DIR

        seg = {"seg_data": "referring.jsonl", "seg_model": SEG_DIR}
    return recipe.to_config(base=BASE_DIR, data={s: f"{s}.jsonl" for s in recipe.sources}, images="images",
                            out="runs/negenc", **seg)
