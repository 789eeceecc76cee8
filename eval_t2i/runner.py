"""The resumable generate-then-judge loop shared by Neg Score and TIFA.

Every finished image is a PNG (written to a temporary name, then renamed) and one JSON line appended
to a JSONL log; the line is written last, so a line means a complete image. A killed run is started
again with `--resume`: finished (arm, key, seed) triples are skipped, and a torn last line (the kill
landed mid-write) is dropped from the file before anything is appended.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from negation_encoder.errors import InputError

from .generation import ARMS, ArmSwitcher, GenerationConfig, generate

OUR_FILES = ("run_config.json", "summary.json", "report.md", "grid.png")
OUR_LOGS = ("images.jsonl", "tifa_images.jsonl")


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


def read_jsonl(path: Path) -> list[dict]:
    """All complete records; a torn last line is cut off the file (it is the one a kill interrupted).
    A bad line anywhere else is a corrupted log, reported with its line number."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records, good_bytes = [], 0
    for n, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + (1 if n < len(lines) - 1 else 0)
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n >= len(lines) - 2 and not any(x.strip() for x in lines[n + 1:]):
                with path.open("r+b") as f:
                    f.truncate(good_bytes)
                break
            raise InputError(f"{path}:{n + 1}: not a JSON record; the run log is corrupted") from None
        good_bytes += len(line) + 1
    return records


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def prepare_out_dir(out: Path, fingerprint: dict, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty folder unless resuming (with the same settings) or overwriting; `overwrite`
    removes only the files this tool writes, never anything else a user keeps there."""
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "run_config.json"
    if any(out.iterdir()):
        if resume:
            if config_path.exists():
                old = json.loads(config_path.read_text())
                diff = [k for k in fingerprint if k in old and old[k] != fingerprint[k]]
                if diff:
                    k = diff[0]
                    raise InputError(f"--resume: {out} was made with {k}={old[k]!r}, this run has {k}={fingerprint[k]!r}; "
                                     f"use another --out or --overwrite")
        elif overwrite:
            for name in OUR_FILES + OUR_LOGS:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "images", ignore_errors=True)
        else:
            raise InputError(f"--out {out} is not empty; pass --resume to continue that run or --overwrite to "
                             f"replace its results")
    config_path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


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
    log = out / log_name
    records = read_jsonl(log)
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
                path = out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.png")
                image.save(tmp)
                os.replace(tmp, path)
                record = {"arm": job.arm, "key": job.key, "seed": job.seed, "prompt_used": job.prompt,
                          "negative_prompt": job.negative_prompt, "image": rel, **job.meta, **extra}
                append_jsonl(log, [record])
                records.append(record)
                stats.generated += 1
                bar.update(1)
                if on_record is not None:
                    on_record(record)
    bar.close()
    return records, stats
