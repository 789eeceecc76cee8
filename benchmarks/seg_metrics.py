"""Segmentation metrics: eval_seg's one-pass histogram vs a straightforward per-threshold loop.

    python benchmarks/seg_metrics.py [--json PATH] [--masks 200] [--size 352] [--repeats 1] [--smoke]

Both compute the same CLIPSeg fixed-interval state (TP/FP/FN/TN at the 49 thresholds, per sample for
mIoU, summed for fgIoU / IoU_BIN / AP) from raw logits at 352x352 and masks of the same size, in
batches of 8. The baseline is the code one writes from the definition: for every sample and every
threshold, `p > t` and four masked sums. Results are checked equal before anything is timed.

Peak memory: tracemalloc would miss it (torch allocates tensor storage outside Python's allocator),
so on CPU each path runs once in a fresh process and we report how far its resident-set high-water
mark rose above its RSS once the inputs were built: the memory the computation needed at its worst
moment. On CUDA it is `torch.cuda.max_memory_allocated` above the inputs. Both paths
keep only counts between batches, so their peaks are per batch (vectorised: 8 masks at once) or per
sample (loop) and are measured on 16 masks; neither grows with the number of masks or thresholds.
`--smoke`: 16 masks of 64x64 (a check that the script runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, report  # noqa: E402
from eval_seg.metrics import (  # noqa: E402
    N_BINS,
    FixedIntervalMetrics,
    counts_from_histograms,
    probabilities_at_mask_size,
)

THRESHOLDS_PY = np.linspace(0, 1, N_BINS + 1)[1:-1].tolist()
BATCH = 8
MEM_MASKS = 16  # both peaks are per batch / per sample, so 16 masks show them; the loop takes minutes on 200


def data(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, size, size, generator=g) * 3
    masks = torch.rand(n, size, size, generator=g) < 0.3
    return logits, masks


def vectorised(logits, masks) -> torch.Tensor:
    m = FixedIntervalMetrics(per_sample_classes=True)
    hists = [m.update(logits[i: i + BATCH], masks[i: i + BATCH]) for i in range(0, len(logits), BATCH)]
    m.compute()
    return torch.cat(hists)


def per_threshold_loop(logits, masks) -> torch.Tensor:
    """(N, 4, 49) counts tp, fp, fn, tn per sample and threshold, straight from the definition."""
    out = torch.zeros(len(logits), 4, len(THRESHOLDS_PY), dtype=torch.long)
    for i in range(len(logits)):
        p = probabilities_at_mask_size(logits[i], tuple(masks[i].shape))
        g = masks[i]
        for j, t in enumerate(THRESHOLDS_PY):
            pos = p > t
            out[i, 0, j] = (pos & g).sum()
            out[i, 1, j] = (pos & ~g).sum()
            out[i, 2, j] = (~pos & g).sum()
            out[i, 3, j] = (~pos & ~g).sum()
    return out


PATHS = {"vectorised": vectorised, "loop": per_threshold_loop}


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return (time.perf_counter() - start) / repeats, result


def _proc_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(path: str, n: int, size: int) -> float:
    """Peak memory one path adds on top of its inputs. CUDA: torch's allocator peak. CPU: the path runs
    in a fresh process (`--memory-of`), which reports how far its resident-set high-water mark rose
    above its RSS once the inputs were built (VmHWM - VmRSS): the memory the computation needed at its
    worst moment. A fresh process, not a fork: forking after torch started its thread pool can hang."""
    if torch.cuda.is_available():
        logits, masks = data(n, size)
        logits, masks = logits.cuda(), masks.cuda()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        PATHS[path](logits, masks)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--memory-of", path, "--masks", str(n), "--size", str(size)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _memory_child(path: str, n: int, size: int) -> None:
    logits, masks = data(n, size)
    base = _proc_kb("VmRSS")
    PATHS[path](logits, masks)
    print((_proc_kb("VmHWM") - base) / 1024)


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--masks", type=int, default=200, help="number of masks (default 200)")
    ap.add_argument("--size", type=int, default=352, help="mask side in pixels (default 352)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs after one warm-up (default 1)")
    ap.add_argument("--memory-of", choices=("vectorised", "loop"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.masks, args.size, args.repeats = MEM_MASKS, 64, 1
    if args.memory_of:
        _memory_child(args.memory_of, args.masks, args.size)
        return {}
    torch.manual_seed(0)
    logits, masks = data(args.masks, args.size)
    fast_s, hist = timed(lambda: vectorised(logits, masks), args.repeats)
    slow_s, loop = timed(lambda: per_threshold_loop(logits, masks), args.repeats)
    c = counts_from_histograms(hist)
    same = all(torch.equal(c[k], loop[:, i]) for i, k in enumerate(("tp", "fp", "fn", "tn")))
    if not same:
        raise SystemExit("the vectorised counts differ from the per-threshold loop")
    results = {
        "smoke": args.smoke,
        "masks": args.masks, "size": args.size, "thresholds": len(THRESHOLDS_PY), "threads": torch.get_num_threads(),
        "vectorised_s": fast_s, "loop_s": slow_s, "speedup": slow_s / fast_s,
        "vectorised_peak_memory_mb": peak_memory_mb("vectorised", MEM_MASKS, args.size),
        "loop_peak_memory_mb": peak_memory_mb("loop", MEM_MASKS, args.size),
        "memory_masks": MEM_MASKS,
        "counts_equal": same,
    }
    return report(results, args.json)


if __name__ == "__main__":
    main()
