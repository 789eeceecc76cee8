"""The resumable generate-then-judge loop shared by Neg Score and TIFA, sharded over launched processes.

Every finished image is a PNG (written atomically) and one JSON line appended to a part file of the
run's JSONL log (`negation_encoder.distributed.PartLogs` over `negation_encoder.runio`); the line is
written last, so a line means a complete image. When every job is done the main process merges the
parts into the log (`images.jsonl`, `tifa_images.jsonl`: the jobs' order, whatever process made which
image) and removes them. A killed run is started again with `--resume`: finished (arm, key, seed)
triples, in the log or in any part, are skipped, and a torn last line (the kill landed mid-write) is
dropped before anything is appended.

Under `accelerate launch` / `torchrun` each process takes whole pipeline batches, round-robin from the
batch list one process would form, so an image and its judge answers are computed in the same batch
as in a one-process run: N processes write the images and the log one process writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from negation_encoder.distributed import PartLogs, processes
from negation_encoder.errors import InputError
from negation_encoder.runio import JsonlLog, RunFolder, atomic_save_image

from .generation import ARMS, ArmSwitcher, GenerationConfig, generate

OWNED = ("run_config.json", "summary.json", "report.md", "grid.png", "images.jsonl", "tifa_images.jsonl",
         "tifa_summary.json", "tifa_report.md", "images", "runs", "negated", "control", "results.json", "parts")


@dataclass(frozen=True)
class Job:
    """One image to make: which arm, which prompt (`key`), which seed, and what the pipeline is sent."""

    arm: str
    key: str
    seed: int
    prompt: str
    negative_prompt: str | None
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    t5_prompt: str | None = None  # what a T5 beside the swapped CLIP reads (the stacked arm: the affirmative part)

    @property
    def ident(self) -> tuple[str, str, int]:
        return (self.arm, self.key, self.seed)


def image_relpath(arm: str, key: str, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)
    return f"images/{arm.replace('+', '_')}/{safe}_s{seed}.png"


def prepare_out_dir(out: Path, fingerprint: dict, resume: bool, overwrite: bool) -> None:
    """`runio.RunFolder`'s rules for this tool's files: a folder holding its results is refused unless
    resuming (with the same settings) or overwriting, which removes only the files this tool writes.
    Under a launcher the main process prepares the folder while the others wait."""
    processes().on_main(lambda: RunFolder(out, OWNED).prepare(resume, overwrite, fingerprint))


JudgeFn = Callable[[list[Image.Image], list[Job]], list[dict]]


@dataclass
class RunStats:
    generated: int = 0
    skipped: int = 0


def _settings(out: Path, log_name: str, config: GenerationConfig) -> dict:
    """What a part of this log is valid for: the run folder's saved settings and the generation config."""
    saved = out / "run_config.json"
    try:
        run = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else None
    except (OSError, json.JSONDecodeError):
        run = None
    return {"log": log_name, "run": run, "generation": asdict(config)}


def _finished(out: Path, log: JsonlLog, parts: PartLogs) -> dict[tuple[str, str, int], dict]:
    """Every finished image (its line written and its PNG present) of the merged log and of every part."""
    done: dict[tuple[str, str, int], dict] = {}
    for r in [*log.records(), *parts.records()]:
        ident = (r["arm"], r["key"], int(r["seed"]))
        if ident not in done and (out / r["image"]).exists():
            done[ident] = r
    return done


def _batches(todo: list[Job], batch_size: int) -> list[list[Job]]:
    """`batch_size` jobs a pipeline call, one arm at a time: the list one process would work through."""
    out = []
    for arm in dict.fromkeys(j.arm for j in todo):
        arm_jobs = [j for j in todo if j.arm == arm]
        out += [arm_jobs[i: i + batch_size] for i in range(0, len(arm_jobs), batch_size)]
    return out


def run_jobs(jobs: list[Job], switcher: ArmSwitcher, out: Path, log_name: str, judge_fn: JudgeFn,
             config: GenerationConfig, batch_size: int, progress: bool = True,
             on_record: Callable[[dict], None] | None = None) -> tuple[list[dict], RunStats]:
    """Generate and judge every job not already finished, `batch_size` images a pipeline call, and return
    every record (jobs' order first, then earlier records of other jobs) on every process.

    Under a launcher the batches (formed exactly as one process forms them) go round-robin to the
    processes; each appends its records to its own part file, the main process merges the log and
    removes the parts. `judge_fn` returns the judge fields of each image's record. `on_record` is
    called after each record is durable (a progress hook; raising in it stops the run like a kill)."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    procs = processes()
    out = Path(out)
    parts = PartLogs(out, Path(log_name).stem, _settings(out, log_name, config), procs)

    def repair() -> None:
        parts.check()
        JsonlLog(out / log_name)
        parts.repair()

    procs.on_main(repair)
    log = JsonlLog(out / log_name)
    done = _finished(out, log, parts)
    procs.wait()  # every process has read what is finished before any appends: all form the same batch list
    todo = [j for j in jobs if j.ident not in done]
    stats = RunStats(skipped=len(jobs) - len(todo))
    mine = procs.share(_batches(todo, batch_size))
    new: list[dict] = []
    bar = tqdm(total=sum(map(len, mine)), disable=not progress or not procs.is_main, desc="images", unit="img")
    for batch in mine:
        switcher.use(ARMS[batch[0].arm])
        images = generate(switcher.pipe, [j.prompt for j in batch], [j.negative_prompt for j in batch],
                          [j.seed for j in batch], config, t5_prompts=[j.t5_prompt for j in batch])
        judged = judge_fn(images, batch)
        for job, image, extra in zip(batch, images, judged, strict=True):
            rel = image_relpath(job.arm, job.key, job.seed)
            atomic_save_image(out / rel, image)
            record = {"arm": job.arm, "key": job.key, "seed": job.seed, "prompt_used": job.prompt,
                      "negative_prompt": job.negative_prompt, "image": rel, **job.meta, **extra,
                      **({"t5_prompt_used": job.t5_prompt} if job.t5_prompt is not None else {})}
            parts.append([record])
            new.append(record)
            bar.update(1)
            if on_record is not None:
                on_record(record)
    bar.close()
    for recs in procs.gather(new):
        done.update({(r["arm"], r["key"], int(r["seed"])): r for r in recs})
        stats.generated += len(recs)
    order = {j.ident: i for i, j in enumerate(jobs)}
    records = sorted(done.values(), key=lambda r: order.get((r["arm"], r["key"], int(r["seed"])), len(order)))

    def merge() -> None:
        log.rewrite(records)
        parts.remove()

    procs.on_main(merge)
    return records, stats
