"""`negenc generate {p1,rand-p1,p2,presence,t2i,referring}`: negation data from COCO / VQAv2 / RefCOCOg.

Backends: `--llm transformers:MODEL` (local, `--device-map`/`--dtype` for GPUs) or
`--llm openai:MODEL@URL` (any OpenAI-compatible server: vLLM, TGI, llama.cpp; key from
$OPENAI_API_KEY or `--api-key-env`); the same for `--mllm`. t2i and referring need no LLM (templates;
`--llm` rewrites them). `--shard i/n` splits the input deterministically so n machines or servers each
write their own JSONL; `negenc data merge` joins them (NegationRecord files).
"""

from __future__ import annotations

import argparse
import json

from ..data.categories import COCO_CATEGORIES  # Rand-P1's default category list
from ..errors import InputError

PIPELINE_CHOICES = ("p1", "rand-p1", "p2", "presence", "t2i", "referring")


def generate_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help="negation data pipelines on COCO / VQAv2 / RefCOCOg, LLM/MLLM backends",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", choices=PIPELINE_CHOICES,
                   help="p1: LLM-proposed absent objects verified by the MLLM; rand-p1: random COCO categories "
                        "verified by the MLLM; p2: VQAv2 'no' answers; presence: negate an object the caption "
                        "mentions; t2i: short generator prompts negating an absent co-occurring COCO category; "
                        "referring: RefCOCOg train refs as ReferringRecords with masks, negated and affirmative")
    p.add_argument("--coco-captions", help="captions_train2017.json (or 2014) (every pipeline but referring)")
    p.add_argument("--images", required=True, help="COCO image folder (file_name is relative to it)")
    p.add_argument("--instances", help="COCO instances_train2014.json (t2i: the objects each image has; referring: "
                                       "RefCOCOg's instances.json with the masks)")
    p.add_argument("--refs", help="RefCOCOg refs(umd).p (referring; only its train split is read)")
    p.add_argument("--exclude", action="append", default=[], metavar="EVAL_FILE",
                   help="referring: an evaluation file (NegRefCOCOg.json, refs, a JSONL set) whose ref ids and images "
                        "are never used; repeatable")
    p.add_argument("--vqa-questions", help="v2_OpenEnded_mscoco_*_questions.json (p2)")
    p.add_argument("--vqa-annotations", help="v2_mscoco_*_annotations.json (p2)")
    p.add_argument("--llm", help="transformers:MODEL or openai:MODEL@URL (required but for t2i and referring, "
                                 "where it rewrites the templated texts)")
    p.add_argument("--mllm", help="transformers:MODEL or openai:MODEL@URL (p1, rand-p1)")
    p.add_argument("--out", required=True, help="output .jsonl (appended; resumable)")
    p.add_argument("--shard", default="0/1", help="i/n: process only this deterministic share of the input")
    p.add_argument("--limit", type=int, default=None, help="first N input items")
    p.add_argument("--k", type=int, default=3, help="objects proposed per caption (p1)")
    p.add_argument("--per-item", type=int, default=1, help="records kept per caption (p1, rand-p1)")
    p.add_argument("--confidence", type=float, default=0.8, help="keep an object if P(absent) >= this")
    p.add_argument("--candidates", type=int, default=5,
                   help="t2i: the absent object is drawn from this many categories that co-occur most with the image's")
    p.add_argument("--max-subject-words", type=int, default=16, help="t2i: skip captions longer than this")
    p.add_argument("--batch-size", type=int, default=32, help="items per pipeline batch (and per local model call)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel requests per HTTP backend")
    p.add_argument("--categories", help="text file, one category per line (rand-p1; default: COCO's 80)")
    p.add_argument("--device-map", default=None, help="transformers device_map, e.g. auto")
    p.add_argument("--dtype", default=None, help="transformers dtype, e.g. bfloat16")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the server's API key (never printed)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    p.add_argument("--max-retries", type=int, default=4,
                   help="retries (exponential backoff) per HTTP request before the run fails")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling, Rand-P1's draws and t2i/referring templates")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=generate_command)
    return p


def make_llm(spec: str, args) -> object:
    from ..data.llm import OpenAIChat, PromptedLLM, TransformersChat

    kind, _, rest = spec.partition(":")
    if kind == "transformers" and rest:
        return PromptedLLM(TransformersChat(rest, batch_size=args.batch_size, device_map=args.device_map, dtype=args.dtype))
    if kind == "openai" and "@" in rest:
        model, url = rest.split("@", 1)
        return PromptedLLM(OpenAIChat(url, model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                                      seed=args.seed, timeout=args.timeout, max_retries=args.max_retries))
    raise InputError(f"--llm must be transformers:MODEL or openai:MODEL@URL, got {spec!r}")


def make_mllm(spec: str | None, args) -> object | None:
    from ..data.llm import OpenAIChat, OpenAIMLLM, TransformersMLLM

    if spec is None:
        return None
    kind, _, rest = spec.partition(":")
    if kind == "transformers" and rest:
        return TransformersMLLM(rest, image_root=args.images, batch_size=args.batch_size, device_map=args.device_map,
                                dtype=args.dtype)
    if kind == "openai" and "@" in rest:
        model, url = rest.split("@", 1)
        return OpenAIMLLM(OpenAIChat(url, model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                                     timeout=args.timeout, max_retries=args.max_retries), image_root=args.images)
    raise InputError(f"--mllm must be transformers:MODEL or openai:MODEL@URL, got {spec!r}")


def _need(args, pipeline: str, *flags: str) -> None:
    missing = [f for f in flags if not getattr(args, f.lstrip("-").replace("-", "_"))]
    if missing:
        raise InputError(f"{pipeline} needs {' and '.join(missing)}")


def _check_out(args) -> None:
    from pathlib import Path

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder, expected a .jsonl file path")


def generate_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.coco import load_coco_captions, load_vqa_no_items
    from ..data.pipelines import PipelineConfig, run_pipeline
    from ..data.shards import parse_shard, shard_items

    pipeline = args.pipeline.replace("-", "_")
    if pipeline == "t2i":
        return _t2i_command(args)
    if pipeline == "referring":
        return _referring_command(args)
    _need(args, args.pipeline, "--coco-captions", "--llm")
    if pipeline in ("p1", "rand_p1") and not args.mllm:
        raise InputError(f"{args.pipeline} needs --mllm to verify that proposed objects are absent")
    if pipeline == "p2" and not (args.vqa_questions and args.vqa_annotations):
        raise InputError("p2 needs --vqa-questions and --vqa-annotations")
    index, count = parse_shard(args.shard)
    _check_out(args)
    if pipeline == "p2":
        items = load_vqa_no_items(args.vqa_questions, args.vqa_annotations, args.coco_captions, args.images, limit=args.limit)
    else:
        items = load_coco_captions(args.coco_captions, args.images, limit=args.limit)
    items = shard_items(items, index, count)
    categories = COCO_CATEGORIES
    if args.categories:
        path = Path(args.categories)
        if not path.is_file():
            raise InputError(f"{path}: category file not found")
        categories = tuple(line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    cfg = PipelineConfig(pipeline=pipeline, k=args.k, per_item=args.per_item, confidence=args.confidence,
                         batch_size=args.batch_size, seed=args.seed, categories=categories)
    stats = run_pipeline(items, args.out, cfg, make_llm(args.llm, args), make_mllm(args.mllm, args),
                         progress=not args.no_progress)
    print(json.dumps(stats.to_dict(), indent=2))
    return 0


def _template_checks(args, pipeline: str) -> tuple[int, int]:
    """The checks t2i and referring share (no MLLM, a positive limit, the shard, the output path)."""
    from ..data.shards import parse_shard

    if args.mllm:
        raise InputError(f"{pipeline} takes no --mllm (nothing is verified by looking at images)")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    index, count = parse_shard(args.shard)
    _check_out(args)
    return index, count


def _t2i_command(args: argparse.Namespace) -> int:
    """Every input read and checked, then the LLM (if any) loaded, then generation."""
    from ..data.coco import load_coco_captions
    from ..data.distractors import load_coco_instances
    from ..data.shards import shard_items
    from ..data.t2i import Cooccurrence, T2IConfig, run_t2i, with_objects

    _need(args, "t2i", "--coco-captions", "--instances")
    index, count = _template_checks(args, "t2i")
    cfg = T2IConfig(candidates=args.candidates, max_subject_words=args.max_subject_words,
                    batch_size=args.batch_size, seed=args.seed)
    captions = load_coco_captions(args.coco_captions, args.images, limit=args.limit)
    categories = load_coco_instances(args.instances)
    items = shard_items(with_objects(captions, categories, args.coco_captions, args.instances), index, count)
    unlisted = sum(c.image not in categories for c in captions)
    llm = make_llm(args.llm, args) if args.llm else None
    stats = run_t2i(items, args.out, Cooccurrence(categories), cfg, llm=llm, progress=not args.no_progress,
                    counts={"select:image_not_in_instances": unlisted} if unlisted else None)
    print(json.dumps(stats.to_dict(), indent=2))
    return 0


def _referring_command(args: argparse.Namespace) -> int:
    """The refs, instances, images and evaluation files read and checked, then the LLM (if any), then masks
    and records."""
    from ..data.refcocog import load_exclusions, load_train_refs, mask_folder, run_referring
    from ..data.shards import shard_items

    _need(args, "referring", "--refs", "--instances")
    if args.coco_captions:
        raise InputError("referring reads --refs and --instances, not --coco-captions")
    index, count = _template_checks(args, "referring")
    exclusions = load_exclusions(args.exclude)
    items, left_out = load_train_refs(args.refs, args.instances, args.images, exclusions, limit=args.limit)
    items = shard_items(items, index, count)
    llm = make_llm(args.llm, args) if args.llm else None
    stats = run_referring(items, args.out, args.images, seed=args.seed, batch_size=args.batch_size, llm=llm,
                          progress=not args.no_progress, counts=left_out)
    excluded = sum(v for k, v in left_out.items() if k.startswith("excluded:"))
    print(f"{args.out}: masks in {mask_folder(args.out)}; refs refused as evaluation data: {excluded} named by "
          f"--exclude, {sum(v for k, v in left_out.items() if k.startswith('split:'))} not in the train split")
    print(json.dumps(stats.to_dict(), indent=2))
    return 0
