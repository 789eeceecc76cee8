"""`negenc generate {p1,rand-p1,p2,presence}`: negation data from COCO / VQAv2 with real backends.

Backends: `--llm transformers:MODEL` (local, `--device-map`/`--dtype` for GPUs) or
`--llm openai:MODEL@URL` (any OpenAI-compatible server: vLLM, TGI, llama.cpp; key from
$OPENAI_API_KEY or `--api-key-env`); the same for `--mllm`. `--shard i/n` splits the input
deterministically so n machines or servers each write their own JSONL; `negenc data merge` joins them.
"""

from __future__ import annotations

import argparse
import json

from ..errors import InputError

# COCO's 80 category names: Rand-P1's default category list (the paper draws random COCO objects).
COCO_CATEGORIES = tuple(c.strip() for c in (
    "person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light, fire hydrant, stop sign, "
    "parking meter, bench, bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe, backpack, umbrella, "
    "handbag, tie, suitcase, frisbee, skis, snowboard, sports ball, kite, baseball bat, baseball glove, skateboard, "
    "surfboard, tennis racket, bottle, wine glass, cup, fork, knife, spoon, bowl, banana, apple, sandwich, orange, "
    "broccoli, carrot, hot dog, pizza, donut, cake, chair, couch, potted plant, bed, dining table, toilet, tv, laptop, "
    "mouse, remote, keyboard, cell phone, microwave, oven, toaster, sink, refrigerator, book, clock, vase, scissors, "
    "teddy bear, hair drier, toothbrush").split(","))


def generate_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help="negation data pipelines on COCO / VQAv2 with LLM/MLLM backends",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", choices=["p1", "rand-p1", "p2", "presence"],
                   help="p1: LLM-proposed absent objects verified by the MLLM; rand-p1: random COCO categories "
                        "verified by the MLLM; p2: VQAv2 'no' answers; presence: negate an object the caption mentions")
    p.add_argument("--coco-captions", required=True, help="captions_train2017.json (or 2014)")
    p.add_argument("--images", required=True, help="COCO image folder (file_name is relative to it)")
    p.add_argument("--vqa-questions", help="v2_OpenEnded_mscoco_*_questions.json (p2)")
    p.add_argument("--vqa-annotations", help="v2_mscoco_*_annotations.json (p2)")
    p.add_argument("--llm", required=True, help="transformers:MODEL or openai:MODEL@URL")
    p.add_argument("--mllm", help="transformers:MODEL or openai:MODEL@URL (p1, rand-p1)")
    p.add_argument("--out", required=True, help="output NegationRecord .jsonl (appended; resumable)")
    p.add_argument("--shard", default="0/1", help="i/n: process only this deterministic share of the input")
    p.add_argument("--limit", type=int, default=None, help="first N input items")
    p.add_argument("--k", type=int, default=3, help="objects proposed per caption (p1)")
    p.add_argument("--per-item", type=int, default=1, help="records kept per caption (p1, rand-p1)")
    p.add_argument("--confidence", type=float, default=0.8, help="keep an object if P(absent) >= this")
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
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and Rand-P1's draws")
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


def generate_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.coco import load_coco_captions, load_vqa_no_items
    from ..data.pipelines import PipelineConfig, run_pipeline
    from ..data.shards import parse_shard, shard_items

    pipeline = args.pipeline.replace("-", "_")
    if pipeline in ("p1", "rand_p1") and not args.mllm:
        raise InputError(f"{args.pipeline} needs --mllm to verify that proposed objects are absent")
    if pipeline == "p2" and not (args.vqa_questions and args.vqa_annotations):
        raise InputError("p2 needs --vqa-questions and --vqa-annotations")
    index, count = parse_shard(args.shard)
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder, expected a .jsonl file path")
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
