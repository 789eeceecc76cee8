"""`negenc split TEXT...`: how the negation splitter reads each text, one JSON object a line.

    negenc split "a street with no cars" "the cup that is not red"
    negenc split "a lake with no boats at sunset" --llm openai:MODEL@http://localhost:8000/v1

Each line is `NegationSplit.to_dict()`: the affirmative part, the negated concepts with their type
(object, attribute, action, relation) and cue, whether the negation is bare (affirms nothing), and
`unsure`: why the splitter left a text with a cue whole rather than guess its scope (null otherwise).
Without `--llm` the rule splitter answers; with it, a chat model does (the same backends as `negenc
generate`), and a malformed answer falls back to the rules (counted on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError


def split_command_parser(subparsers) -> argparse.ArgumentParser:
    from ..splitting import LLM_PROMPT_VERSION

    p = subparsers.add_parser("split", help="print how the negation splitter reads texts (JSON, one a line)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="caption(s) or prompt(s) to split")
    p.add_argument("--llm", help="transformers:MODEL or openai:MODEL@URL (default: the rule splitter)")
    p.add_argument("--prompt-version", default=LLM_PROMPT_VERSION,
                   help=f"split_negation prompt version for --llm (default: {LLM_PROMPT_VERSION})")
    p.add_argument("--batch-size", type=int, default=16, help="texts per local model call (--llm transformers)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel requests (--llm openai)")
    p.add_argument("--device-map", default=None, help="transformers device_map, e.g. auto")
    p.add_argument("--dtype", default=None, help="transformers dtype, e.g. bfloat16")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the server's API key (never printed)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    p.add_argument("--max-retries", type=int, default=4, help="retries per HTTP request before the run fails")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for the server")
    p.set_defaults(func=split_command)
    return p


def make_splitter(args: argparse.Namespace):
    """The rule splitter, or an `LLMSplitter` over the backend `negenc generate` would build."""
    from ..splitting import LLMSplitter, RuleSplitter

    if not args.llm:
        return RuleSplitter()
    from ..prompt_files import load_prompt

    try:
        load_prompt("split_negation", args.prompt_version)
    except FileNotFoundError as e:
        raise InputError(f"--prompt-version {args.prompt_version!r}: {e}") from None
    from . import generate  # the module, so a test can stand in for its make_llm

    return LLMSplitter(generate.make_llm(args.llm, args), prompt_version=args.prompt_version)


def split_command(args: argparse.Namespace) -> int:
    empty = [str(k + 1) for k, t in enumerate(args.texts) if not t.strip()]
    if empty:
        raise InputError(f"TEXT {', '.join(empty)} is empty; expected a caption such as 'a street with no cars'")
    splitter = make_splitter(args)
    for s in splitter.split_batch(args.texts):
        print(json.dumps(s.to_dict(), ensure_ascii=False))
    fallbacks = getattr(splitter, "fallbacks", 0)
    if fallbacks:
        print(f"negenc split: {fallbacks} of {len(set(args.texts))} model answers were malformed; the rules "
              f"split those", file=sys.stderr)
    return 0
