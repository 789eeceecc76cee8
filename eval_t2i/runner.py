"""The resumable generate-then-judge loop shared by Neg Score and TIFA.

Every finished image is a PNG (written atomically) and one JSON line appended to a JSONL log
(`negation_encoder.runio`); the line is written last, so a line means a complete image. A killed run is
started again with `--resume`: finished (arm, key, seed) triples are skipped, and a torn last line (the
kill landed mid-write) is dropped from the file before anything is appended.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from negation_encoder.errors import InputError
from negation_encoder.runio import JsonlLog, RunFolder, atomic_save_image

from .generation import ARMS, ArmSwitcher, GenerationConfig, generate

OWNED = ("run_config.json", "summary.json", "report.md", "grid.png", "images.jsonl", "tifa_images.jsonl",
         "tifa_summary.json", "tifa_report.md", "images", "runs", "negated", "control", "results.json")


@dataclass(frozen=True)
class Job:
    """One image to make: which arm, which prompt (`key`), which seed, and what the pipeline is sent."""

    arm: str
    key: str
    seed: int
    prompt: str
    negative_prompt: str | None
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def ident(self) -> tuple[str, str, int]:
        return (self.arm, self.key, self.seed)


def image_relpath(arm: str, key: str, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)
    return f"images/{arm.replace('+', '_')}/{safe}_s{seed}.png"


def prepare_out_dir(out: Path, fingerprint: dict, resume: bool, overwrite: bool) -> None:
    """`runio.RunFolder`'s rules for this tool's files: a folder holding its results is refused unless
    resuming (with the same settings) or overwriting, which removes only the files this tool writes."""
    RunFolder(out, OWNED).prepare(resume, overwrite, fingerprint)


JudgeFn = Callable[[list[Image.Image], list[Job]], list[dict]]


@dataclass
class RunStats:
    generated: int = 0
    skipped: int = 0


def run_jobs(jobs: list[Job], switcher: ArmSwitcher, out: Path, log_name: str, judge_fn: JudgeFn,
             config: GenerationConfig, batch_size: int, progress: bool = True,
             on_record: Callable[[dict], None] | None = None) -> tuple[list[dict], RunStats]:
    """Generate and judge every job not already in the log, one arm at a time, `batch_size` images a
    pipeline call. `judge_fn` returns the judge fields of each image's record. `on_record` is called
    after each record is durable (a progress hook; raising in it stops the run like a kill would)."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    log = JsonlLog(out / log_name)
    records = log.records()
    done = {(r["arm"], r["key"], int(r["seed"])) for r in records if (out / r["image"]).exists()}
    records = [r for r in records if (r["arm"], r["key"], int(r["seed"])) in done]
    todo = [j for j in jobs if j.ident not in done]
    stats = RunStats(skipped=len(jobs) - len(todo))
    bar = tqdm(total=len(todo), disable=not progress, desc="images", unit="img")
    for arm in dict.fromkeys(j.arm for j in todo):
        switcher.use(ARMS[arm])
        arm_jobs = [j for j in todo if j.arm == arm]
        for i in range(0, len(arm_jobs), batch_size):
            batch = arm_jobs[i: i + batch_size]
            images = generate(switcher.pipe, [j.prompt for j in batch], [j.negative_prompt for j in batch],
                              [j.seed for j in batch], config)
            judged = judge_fn(images, batch)
            for job, image, extra in zip(batch, images, judged, strict=True):
                rel = image_relpath(job.arm, job.key, job.seed)
                atomic_save_image(out / rel, image)
                record = {"arm": job.arm, "key": job.key, "seed": job.seed, "prompt_used": job.prompt,
                          "negative_prompt": job.negative_prompt, "image": rel, **job.meta, **extra}
                log.append([record])
                records.append(record)
                stats.generated += 1
                bar.update(1)
                if on_record is not None:
                    on_record(record)
    bar.close()
    return records, stats
