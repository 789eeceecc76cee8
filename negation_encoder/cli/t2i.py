"""`negenc t2i {validate,negscore,tifa,compare}`: Neg Score and TIFA-style scores for diffusers pipelines.

A thin skin over `eval_t2i.run(T2IConfig)`: the flags are built from the config's fields, so the CLI and
the Python API accept and refuse the same values. Bad input (a prompt file, a judge without yes/no
tokens, an encoder that does not fit the pipeline) is reported in one line, exit 2, before any image.
"""

from __future__ import annotations

import argparse

from ..errors import InputError


def t2i_command_parser(subparsers) -> argparse.ArgumentParser:
    from eval_t2i.api import T2IConfig

    from ..configs import add_config_arguments

    parser = subparsers.add_parser("t2i", help="text-to-image evaluation: Neg Score, TIFA-style score, arms compared",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(_group_parser=parser)
    sub = parser.add_subparsers(title="t2i commands", metavar="COMMAND", parser_class=type(parser))
    v = sub.add_parser("validate", help="check a prompt file (or a built-in set name); print counts")
    v.add_argument("file", help="prompt file in any supported format, or negation_v1 / negation_v1_control")
    v.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                   help="tokenizer (or pipeline folder / id holding tokenizer/) to count prompt tokens with: a prompt "
                        "longer than its window is truncated at generation")
    v.set_defaults(func=validate_command)
    for name, help_text, skip in (
            ("negscore", "Neg Score of chosen arms on prompts x seeds", ("questions",)),
            ("tifa", "TIFA-style score (choice likelihood) on TIFA v1.0 question/answer JSON", ("prompts",)),
            ("compare", "all five arms on the same prompts and seeds, paired differences, grid", ("arms",))):
        c = sub.add_parser(name, help=help_text)
        add_config_arguments(c, T2IConfig, skip=skip)
        c.add_argument("--no-progress", action="store_true", help="no progress bars")
        c.set_defaults(func=run_command, command=name)
    return parser


# the CLIP tokenizer of SD 1.x, SDXL and Flux (every OpenAI CLIP uses this BPE and its 77-token window)
DEFAULT_TOKENIZER = "openai/clip-vit-large-patch14"


def load_tokenizer(source: str):
    """A tokenizer from a tokenizer folder or id, or from the `tokenizer/` of a pipeline folder or id."""
    from transformers import AutoTokenizer

    from ..checkpoint.sources import check_source_exists

    check_source_exists(source, "--tokenizer")
    try:
        return AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
    except (OSError, ValueError):
        return AutoTokenizer.from_pretrained(source)


def validate_command(args: argparse.Namespace) -> int:
    import sys

    from eval_t2i.prompts import load_prompts, splitter_agreement, truncation_note

    s = load_prompts(args.file)
    print(f"{args.file}: {len(s.items)} valid prompts (format {s.format})")
    print("per negation type: " + ", ".join(f"{k} {v}" for k, v in s.counts_by_type().items()))
    print("per cue: " + ", ".join(f"{k} {v}" for k, v in s.counts_by_cue().items()))
    agreement = splitter_agreement(s.items)
    if agreement["n"]:
        print(f"splitter vs the file's split ({agreement['n']} prompts): negated exact {agreement['negated_exact']:.3f}, "
              f"negated recall {agreement['negated_recall']:.3f}, affirmative exact {agreement['affirmative_exact']:.3f}")
    try:
        tokenizer = load_tokenizer(args.tokenizer)
    except (OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        print(f"token lengths: not checked (cannot load the tokenizer {args.tokenizer}: "
              f"{type(e).__name__}); pass --tokenizer a local tokenizer or pipeline folder")
        return 0
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        print(f"token lengths: not checked (the tokenizer {args.tokenizer} states no maximum length); pass "
              "--tokenizer a CLIP tokenizer or pipeline folder")
        return 0
    note = truncation_note([(i.id, i.prompt) for i in s.items], tokenizer)
    if note:
        print(f"negenc: {note}", file=sys.stderr)
    else:
        print(f"token lengths: every prompt fits the tokenizer's {tokenizer.model_max_length} tokens")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from eval_t2i.api import T2IConfig, run

    from ..configs import config_from_args

    run(config_from_args(T2IConfig, args, progress=not args.no_progress))
    return 0
