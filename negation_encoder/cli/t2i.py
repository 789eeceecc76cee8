"""`negenc t2i {validate,negscore,tifa,compare}`: Neg Score and TIFA-style scores for diffusers pipelines.

Everything heavy (diffusers, the judges, eval_t2i) is imported inside the commands: the core package
never imports diffusers at module level. Bad input (a prompt file, a judge without yes/no tokens, an
encoder that does not fit the pipeline) is reported in one line, exit 2, before any image is made.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError


def _common(p: argparse.ArgumentParser, prompts: bool = True) -> None:
    if prompts:
        p.add_argument("--prompts", required=True,
                       help="prompt file (Park's 107 JSON, the multi-negation JSON, the split CSV, or our format) "
                            "or a built-in set: negation_v1, negation_v1_control")
    p.add_argument("--pipeline", required=True, help="diffusers pipeline: model id or local folder")
    p.add_argument("--encoder", default=None,
                   help="negation encoder checkpoint folder or Hub repo (needed by the swapped arms)")
    p.add_argument("--encoder-2", default=None, help="SDXL text_encoder_2 checkpoint if not the --encoder one")
    p.add_argument("--judge", required=True, help="VQA judge: model id or local folder")
    p.add_argument("--judge-kind", choices=["blip", "vlm"], default="blip",
                   help="blip: BlipForQuestionAnswering; vlm: any AutoModelForImageTextToText chat model")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="weights dtype for pipeline and judge (auto: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma list of seeds; image i of a prompt uses seed i")
    p.add_argument("--batch-size", type=int, default=4, help="images per pipeline call (and judge batch base)")
    p.add_argument("--judge-batch-size", type=int, default=16, help="(image, question) pairs per judge call")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance-scale", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=None, help="image height (default: the pipeline's)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the pipeline's)")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts / captions")
    p.add_argument("--out", required=True, help="output folder (images, images.jsonl, summary.json, report.md, grid.png)")
    p.add_argument("--resume", action="store_true", help="continue a run in --out; finished images are not remade")
    p.add_argument("--overwrite", action="store_true",
                   help="replace this tool's results in a non-empty --out (other files there are left alone)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def t2i_command_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("t2i", help="text-to-image evaluation: Neg Score, TIFA-style score, arms compared",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(_group_parser=parser)
    sub = parser.add_subparsers(title="t2i commands", metavar="COMMAND", parser_class=type(parser))
    v = sub.add_parser("validate", help="check a prompt file (or a built-in set name); print counts")
    v.add_argument("file", help="prompt file in any supported format, or negation_v1 / negation_v1_control")
    v.set_defaults(func=validate_command)
    n = sub.add_parser("negscore", help="Neg Score of chosen arms on prompts x seeds")
    _common(n)
    n.add_argument("--arms", default=None,
                   help="comma list of base, base+negprompt, swapped, swapped+negprompt "
                        "(default: base,base+negprompt, plus the swapped arms with --encoder)")
    n.set_defaults(func=negscore_command)
    t = sub.add_parser("tifa", help="TIFA-style score (choice likelihood) on TIFA v1.0 question/answer JSON")
    _common(t, prompts=False)
    t.add_argument("--questions", required=True, help="TIFA v1.0 question/answer JSON")
    t.add_argument("--arms", default=None, help="comma list of base, swapped (default: base, plus swapped with --encoder)")
    t.set_defaults(func=tifa_command)
    c = sub.add_parser("compare", help="all four arms on the same prompts and seeds, paired differences, grid")
    _common(c)
    c.add_argument("--tifa", default=None, help="also the TIFA-style score of base and swapped on this question file")
    c.set_defaults(func=compare_command)
    return parser


def validate_command(args: argparse.Namespace) -> int:
    from eval_t2i.prompts import load_prompts, splitter_agreement

    s = load_prompts(args.file)
    print(f"{args.file}: {len(s.items)} valid prompts (format {s.format})")
    print("per negation type: " + ", ".join(f"{k} {v}" for k, v in s.counts_by_type().items()))
    print("per cue: " + ", ".join(f"{k} {v}" for k, v in s.counts_by_cue().items()))
    agreement = splitter_agreement(s.items)
    if agreement["n"]:
        print(f"splitter vs the file's split ({agreement['n']} prompts): negated exact {agreement['negated_exact']:.3f}, "
              f"negated recall {agreement['negated_recall']:.3f}, affirmative exact {agreement['affirmative_exact']:.3f}")
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--seeds must be a comma list of integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds must list distinct integers, got {text!r}")
    return seeds


def _check_numbers(args) -> None:
    for flag in ("batch_size", "judge_batch_size", "steps"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("height", "width"):
        v = getattr(args, flag)
        if v is not None and (v < 8 or v % 8):
            raise InputError(f"--{flag} must be a positive multiple of 8, got {v}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")


def _setup(args, arms: tuple[str, ...]):
    """Everything that can fail on bad input, in order, before any image: judge, pipeline, encoder."""
    from eval_t2i.generation import ArmSwitcher, GenerationConfig, load_pipeline, resolve_device_dtype
    from eval_t2i.judges import load_judge

    _check_numbers(args)
    if any(a.startswith("swapped") for a in arms) and not args.encoder:
        raise InputError("--encoder is required for the swapped arms")
    if args.no_progress:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar too
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    judge = load_judge(args.judge, args.judge_kind, batch_size=args.judge_batch_size, device=str(device),
                       dtype=args.dtype)
    pipe = load_pipeline(args.pipeline, device, dtype)
    switcher = ArmSwitcher(pipe, args.encoder, args.encoder_2)
    gen = GenerationConfig(steps=args.steps, guidance_scale=args.guidance_scale, height=args.height, width=args.width)
    return judge, switcher, gen


def _fingerprint(args, kind: str) -> dict:
    return {"command": kind, "pipeline": args.pipeline, "encoder": args.encoder, "encoder_2": args.encoder_2,
            "judge": args.judge, "judge_kind": args.judge_kind, "steps": args.steps, "dtype": args.dtype,
            "guidance_scale": args.guidance_scale, "height": args.height, "width": args.width}


def _default_arms(args, text: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    from eval_t2i.generation import parse_arms

    if text is None:
        return tuple(a for a in allowed if args.encoder or not a.startswith("swapped"))
    arms = parse_arms(text)
    bad = [a for a in arms if a not in allowed]
    if bad:
        raise InputError(f"--arms: {bad[0]} is not available here; expected some of {', '.join(allowed)}")
    return arms


def _negscore(args, arms: tuple[str, ...], kind: str) -> dict:
    from eval_t2i.negscore import NegScoreConfig, run_negscore
    from eval_t2i.prompts import load_prompts, splitter_agreement
    from eval_t2i.report import image_grid, markdown_table, write_summary
    from eval_t2i.runner import prepare_out_dir

    prompt_set = load_prompts(args.prompts)
    items = prompt_set.items[: args.limit] if args.limit else prompt_set.items
    seeds = _seeds(args.seeds)
    judge, switcher, gen = _setup(args, arms)
    out = Path(args.out)
    prepare_out_dir(out, {**_fingerprint(args, kind), "prompts": args.prompts}, args.resume, args.overwrite)
    cfg = NegScoreConfig(seeds=seeds, arms=arms, batch_size=args.batch_size, n_boot=args.n_boot,
                         progress=not args.no_progress)
    summary, records = run_negscore(items, switcher, judge, out, cfg, gen)
    summary["prompts"] = {"source": args.prompts, "format": prompt_set.format, "n": len(items)}
    summary["splitter_agreement"] = splitter_agreement(items)
    write_summary(out, summary)
    table = markdown_table(summary)
    (out / "report.md").write_text(table)
    image_grid(out, records, arms, seeds)
    print(table)
    print(f"wrote {out / 'summary.json'}, {out / 'report.md'}, {out / 'grid.png'} "
          f"({summary['run']['generated']} images generated, {summary['run']['skipped_finished']} already finished)")
    return summary


def negscore_command(args: argparse.Namespace) -> int:
    from eval_t2i.generation import ARMS

    _negscore(args, _default_arms(args, args.arms, tuple(ARMS)), "negscore")
    return 0


def _tifa(args, arms: tuple[str, ...], out: Path, setup=None) -> dict:
    from eval_t2i.report import tifa_table
    from eval_t2i.tifa import load_tifa_questions, run_tifa

    questions = load_tifa_questions(args.questions)
    if args.limit:
        keep = list(dict.fromkeys(q.id for q in questions))[: args.limit]
        questions = [q for q in questions if q.id in keep]
    judge, switcher, gen = setup or _setup(args, arms)
    summary = run_tifa(questions, switcher, judge, out, arms, _seeds(args.seeds), gen, args.batch_size,
                       not args.no_progress)
    (out / "tifa_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    table = tifa_table(summary)
    (out / "tifa_report.md").write_text(table)
    print(table)
    return summary


def tifa_command(args: argparse.Namespace) -> int:
    from eval_t2i.runner import prepare_out_dir
    from eval_t2i.tifa import load_tifa_questions

    arms = _default_arms(args, args.arms, ("base", "swapped"))
    load_tifa_questions(args.questions)  # a bad file fails before any model loads
    setup = _setup(args, arms)
    out = Path(args.out)
    prepare_out_dir(out, {**_fingerprint(args, "tifa"), "questions": args.questions}, args.resume, args.overwrite)
    _tifa(args, arms, out, setup)
    print(f"wrote {out / 'tifa_summary.json'}, {out / 'tifa_report.md'}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from eval_t2i.generation import ARMS

    if not args.encoder:
        raise InputError("compare needs --encoder (the swapped arms)")
    if args.tifa:
        from eval_t2i.tifa import load_tifa_questions

        load_tifa_questions(args.tifa)
    _negscore(args, tuple(ARMS), "compare")
    if args.tifa:
        args.questions = args.tifa
        _tifa(args, ("base", "swapped"), Path(args.out))
    return 0
