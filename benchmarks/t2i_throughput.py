"""Text-to-image evaluation throughput: the batched runner against a per-seed loop, and the judge.

    python benchmarks/t2i_throughput.py [--json PATH] [--images 12] [--batch 12] [--steps 4] [--smoke]

Tiny SD 1.x components and the tiny BLIP judge (`negation_encoder.testing.tiny`), built offline. The
baseline calls the pipeline once per (prompt, seed), as most evaluation scripts do; ours sends
`--batch` images per call with one generator per image (the same pixels, see tests/test_t2i_e2e.py).
The judge is timed answering every (image, question) pair one by one and in batches. Both pairs of
paths are checked to give the same result: `images_equal` (the loop's and the batched runner's pixels)
and `judge_equal` (the judge's probabilities one by one and batched, within 1e-5; the largest gap in
`judge_max_abs_diff`). Everything runs in one process; ratios compare configurations measured here, one after another. `--smoke`: 2
images of one step (a check that the script runs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, report  # noqa: E402
from eval_t2i.generation import GenerationConfig, generate  # noqa: E402
from eval_t2i.judges import BlipJudge  # noqa: E402
from negation_encoder.testing import tiny  # noqa: E402

PROMPTS = ["a street with no cars", "a dog not running", "a table without a cup", "a red bus"]


def _time(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=12, help="images per timed round")
    ap.add_argument("--batch", type=int, default=12, help="images per pipeline call in the batched runner")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps")
    ap.add_argument("--size", type=int, default=32, help="image height and width")
    ap.add_argument("--judge-batch", type=int, default=16, help="(image, question) pairs per judge call")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.batch, args.steps, args.judge_batch = 2, 2, 1, 4
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    cfg = GenerationConfig(steps=args.steps, height=args.size, width=args.size)
    jobs = [(PROMPTS[i % len(PROMPTS)], i) for i in range(args.images)]

    def loop():
        return [generate(pipe, [p], [None], [s], cfg)[0] for p, s in jobs]

    def batched():
        out = []
        for i in range(0, len(jobs), args.batch):
            chunk = jobs[i: i + args.batch]
            out += generate(pipe, [p for p, _ in chunk], [None] * len(chunk), [s for _, s in chunk], cfg)
        return out

    results: dict = {"smoke": args.smoke,
                     "images": args.images, "batch": args.batch, "steps": args.steps, "size": args.size,
                     "threads": torch.get_num_threads()}
    results["loop_images_per_s"] = args.images / _time(loop)
    results["batched_images_per_s"] = args.images / _time(batched)
    results["batch_ratio"] = results["batched_images_per_s"] / results["loop_images_per_s"]

    images = batched()
    results["images_equal"] = all(np.array_equal(np.asarray(a), np.asarray(b))
                                  for a, b in zip(loop(), images, strict=True))

    model, processor = tiny.build_blip_vqa(seed=0)
    judge = BlipJudge(model, processor, batch_size=args.judge_batch, device="cpu")
    pairs_img = [im for im in images for _ in range(2)]
    pairs_q = [q for _ in images for q in ("is there a dog?", "is there a car?")]
    results["judge_pairs"] = len(pairs_q)
    results["judge_one_by_one_pairs_per_s"] = len(pairs_q) / _time(
        lambda: [judge.yes_probability([i], [q]) for i, q in zip(pairs_img, pairs_q, strict=True)])
    results["judge_batched_pairs_per_s"] = len(pairs_q) / _time(lambda: judge.yes_probability(pairs_img, pairs_q))
    results["judge_batch_ratio"] = results["judge_batched_pairs_per_s"] / results["judge_one_by_one_pairs_per_s"]
    one = [p for i, q in zip(pairs_img, pairs_q, strict=True) for p in judge.yes_probability([i], [q])]
    results["judge_max_abs_diff"] = float(np.max(np.abs(np.asarray(one) - np.asarray(
        judge.yes_probability(pairs_img, pairs_q)))))
    results["judge_equal"] = results["judge_max_abs_diff"] <= 1e-5
    return report(results, args.json)


if __name__ == "__main__":
    main()
