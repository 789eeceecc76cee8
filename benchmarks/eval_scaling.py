"""Evaluation scaling: one Neg Score run on the tiny pipeline, in 1 and in 2 processes under torchrun.

    python benchmarks/eval_scaling.py [--json PATH] [--prompts 24] [--seeds 4] [--steps 8] [--size 64] [--smoke]

Tiny SD 1.x components and the tiny BLIP judge (`negation_encoder.testing.tiny`) are saved to a
temporary folder; the same `negenc t2i negscore` command (built-in `negation_v1` prompts, arms `base`
and `base+negprompt`) then runs under `torchrun --standalone --nproc_per_node N`, N = 1 and then 2,
each with OMP_NUM_THREADS=1 (one core per process) and its own output folder.

`seconds_1proc` / `seconds_2proc` are the wall time of the whole launch, as a user waits for it:
process start, imports and model loading are included, and they do not shrink with more processes, so
`speedup` (= seconds_1proc / seconds_2proc, ideal 2.0 on 2 cores) stays below the ideal by that
fixed part. `efficiency` = speedup / 2 (ideal 1.0). `command_seconds_*` are the same runs timed by the
main process inside the command, after its imports (model loading, generation, judging, merging;
`benchmarks/_timed_negenc.py`), and `command_speedup` is their ratio. `machine_speedup` is what the
machine gave 2 processes right after: a fixed matmul loop in 1 process, then in 2 at once (2.0 on two
idle cores; other work on the cores lowers it, and with it what `speedup` can show, up to that work's
load changing between the measurements). `identical` checks that both runs wrote the same
summary.json and images.jsonl. `load_1min_before` is the machine's 1-minute load average before the
first run: other work on the cores lowers the speedup. `--smoke`: 2 prompts, 1 seed, 1 step, 32 px
(a check that the script runs, not a measurement).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import parser, report  # noqa: E402


def build_world(folder: Path) -> None:
    """`sd/` (tiny SD 1.x pipeline) and `blip/` (tiny BLIP judge), offline."""
    from diffusers import StableDiffusionPipeline

    from negation_encoder.testing import tiny

    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(
        folder / "sd")
    model, processor = tiny.build_blip_vqa(seed=0)
    model.save_pretrained(folder / "blip")
    processor.save_pretrained(folder / "blip")


def negscore_argv(world: Path, out: Path, args) -> list[str]:
    seeds = ",".join(str(s) for s in range(args.seeds))
    return ["t2i", "negscore", "--prompts", "negation_v1", "--limit", str(args.prompts), "--pipeline",
            str(world / "sd"), "--judge", str(world / "blip"), "--arms", "base,base+negprompt", "--seeds", seeds,
            "--steps", str(args.steps), "--height", str(args.size), "--width", str(args.size), "--batch-size",
            str(args.batch), "--device", "cpu", "--resamples", "200", "--no-progress", "--out", str(out)]


def timed_launch(nproc: int, argv: list[str], times: Path) -> tuple[float, float]:
    """(wall seconds of `torchrun --standalone --nproc_per_node nproc ... negenc ARGV`, seconds inside the
    command after the imports, as the main process measured them: `_timed_negenc.py`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(Path(__file__).with_name("_timed_negenc.py")), str(times), *argv]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(times.read_text())["seconds"]


SPIN = ("import time, torch; torch.set_num_threads(1); a = torch.randn(256, 256); t = time.perf_counter()\n"
        "for _ in range({n}): a @ a\nprint(time.perf_counter() - t)")


def machine_speedup(iterations: int) -> float:
    """What this machine gives 2 processes now: the same fixed matmul loop in 1 process, then in 2 at once;
    the throughput ratio (2.0 on 2 idle cores, less when other work shares them): the ceiling for
    `speedup` at the time, measured next to it."""
    cmd = [sys.executable, "-c", SPIN.format(n=iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = max(float(p.communicate()[0]) for p in pair)
    return 2 * one / two


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--prompts", type=int, default=24, help="prompts of negation_v1")
    ap.add_argument("--seeds", type=int, default=4, help="seeds per prompt and arm")
    ap.add_argument("--steps", type=int, default=8, help="denoising steps")
    ap.add_argument("--size", type=int, default=64, help="image height and width")
    ap.add_argument("--batch", type=int, default=4, help="images per pipeline call")
    args = ap.parse_args(argv)
    if args.smoke:
        args.prompts, args.seeds, args.steps, args.size, args.batch = 2, 1, 1, 32, 2
    results: dict = {"smoke": args.smoke, "prompts": args.prompts, "seeds": args.seeds, "arms": 2,
                     "images": 2 * args.prompts * args.seeds, "steps": args.steps, "size": args.size,
                     "batch": args.batch, "cpus": os.cpu_count(),
                     "load_1min_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_world(root)
        for n in (1, 2):
            results[f"seconds_{n}proc"], results[f"command_seconds_{n}proc"] = timed_launch(
                n, negscore_argv(root, root / f"out{n}", args), root / f"times{n}.json")
        results["machine_speedup"] = machine_speedup(300 if args.smoke else 3000)
        results["identical"] = all((root / "out1" / f).read_bytes() == (root / "out2" / f).read_bytes()
                                   for f in ("summary.json", "images.jsonl"))
        summary = json.loads((root / "out1" / "summary.json").read_text())
        results["images_made"] = summary["run"]["generated"]
    results["speedup"] = results["seconds_1proc"] / results["seconds_2proc"]
    results["efficiency"] = results["speedup"] / 2
    results["command_speedup"] = results["command_seconds_1proc"] / results["command_seconds_2proc"]
    return report(results, args.json)


if __name__ == "__main__":
    main()
