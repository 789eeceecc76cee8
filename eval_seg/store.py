"""The per-sample log that makes a segmentation run resumable (over `negation_encoder.runio`).

Each finished sample is one JSON line holding its confusion histogram (2 x 50 integers), so the dataset
metrics of a resumed run are rebuilt from integers and equal an uninterrupted run's exactly.
"""

from __future__ import annotations

from pathlib import Path

from negation_encoder.errors import InputError
from negation_encoder.runio import JsonlLog

SAMPLES_FILE = "samples.jsonl"
RUN_FILE = "run.json"
ARM_FILES = (RUN_FILE, SAMPLES_FILE, "metrics.json", "summary.md", "overlays.png")


class SampleLog:
    """`samples.jsonl` of one run folder: what a killed run finished (by sample id), and appends."""

    def __init__(self, folder: Path):
        self.log = JsonlLog(Path(folder) / SAMPLES_FILE)
        self.path = self.log.path
        self.records: dict[str, dict] = {}
        for lineno, rec in enumerate(self.log.records(), start=1):
            if "id" not in rec:
                raise InputError(f"{self.path}:{lineno}: per-sample record without an id; delete the run folder "
                                 "or choose another --out")
            self.records[str(rec["id"])] = rec

    def append(self, records: list[dict]) -> None:
        self.log.append(records)
        for rec in records:
            self.records[str(rec["id"])] = rec
