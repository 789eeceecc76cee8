"""The per-sample log that makes a segmentation run resumable and shardable (over `negation_encoder.runio`).

Each finished sample is one JSON line holding its confusion histogram (2 x 50 integers), so the dataset
metrics of a resumed or sharded run are rebuilt from integers and equal an uninterrupted one-process
run's exactly. Each process appends to its own part file (`negation_encoder.distributed.PartLogs`);
the main process merges the parts into `samples.jsonl` in dataset order and removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from negation_encoder.distributed import PartLogs, Processes
from negation_encoder.errors import InputError
from negation_encoder.runio import JsonlLog

SAMPLES_FILE = "samples.jsonl"
RUN_FILE = "run.json"
ARM_FILES = (RUN_FILE, SAMPLES_FILE, "metrics.json", "summary.md", "overlays.png", "parts")


class SampleLog:
    """What a run folder has finished (by sample id), from `samples.jsonl` and every process's part.

    `settings` is the run's fingerprint: a part written with other settings is refused (one line).
    The main process repairs torn last lines first (`repair`) while the others wait."""

    def __init__(self, folder: Path, settings: dict | None = None, procs: Processes | None = None):
        procs = procs or Processes()
        self.path = Path(folder) / SAMPLES_FILE
        self.parts = PartLogs(folder, Path(SAMPLES_FILE).stem, settings or {}, procs)
        procs.on_main(lambda: self._repair(check=settings is not None))
        self.records: dict[str, dict] = {}
        for source, recs in ((self.path, JsonlLog(self.path).records()), (self.parts.dir, self.parts.records())):
            for lineno, rec in enumerate(recs, start=1):
                if "id" not in rec:
                    raise InputError(f"{source}:{lineno}: per-sample record without an id; delete the run folder "
                                     "or choose another --out")
                self.records.setdefault(str(rec["id"]), rec)

    def _repair(self, check: bool) -> None:
        if check:
            self.parts.check()
        JsonlLog(self.path)
        self.parts.repair()

    def append(self, records: list[dict]) -> None:
        """Append to this process's part (durable line by line, like the merged log)."""
        self.parts.append(records)
        for rec in records:
            self.records[str(rec["id"])] = rec

    def add(self, records: Sequence[dict]) -> None:
        """Records another process finished (gathered), so every process holds them all."""
        for rec in records:
            self.records.setdefault(str(rec["id"]), rec)

    def merge(self, order: Sequence[str]) -> None:
        """Main process: rewrite `samples.jsonl` with every record, `order`'s ids first (the dataset order),
        then the rest as read, and remove the parts."""
        rank = {sid: i for i, sid in enumerate(order)}
        recs = sorted(self.records.values(), key=lambda r: rank.get(str(r["id"]), len(rank)))
        JsonlLog(self.path).rewrite(recs)
        self.parts.remove()
