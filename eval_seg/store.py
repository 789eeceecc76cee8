"""Run folder I/O: the append-only per-sample JSONL that makes a run resumable, and atomic writes.

Each finished sample is one line holding its confusion histogram (2 x 50 integers), so the dataset
metrics of a resumed run are rebuilt from integers and equal an uninterrupted run's exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from negation_encoder.errors import InputError

SAMPLES_FILE = "samples.jsonl"
RUN_FILE = "run.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and `os.replace`, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class SampleLog:
    """`samples.jsonl` of one run: read what a killed run finished, append the rest line by line.

    A torn last line (a kill during a write) is cut off on open; every other line must parse.
    """

    def __init__(self, folder: Path):
        self.path = folder / SAMPLES_FILE
        self.records: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):
                with self.path.open("r+b") as fh:
                    fh.truncate(cut)
            for lineno, line in enumerate(data[:cut].decode("utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self.records[str(rec["id"])] = rec
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise InputError(f"{self.path}:{lineno}: unreadable per-sample record ({e}); "
                                     "delete the run folder or choose another --out") from None

    def append(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
                self.records[str(rec["id"])] = rec
            fh.flush()
            os.fsync(fh.fileno())


def check_run_folder(folder: Path, fingerprint: dict, resume: bool) -> None:
    """A folder with results continues only with --resume and the same settings (else results would mix)."""
    run_file = folder / RUN_FILE
    has_results = (folder / SAMPLES_FILE).exists()
    if not resume:
        if has_results:
            raise InputError(f"--out {folder}: already holds results ({SAMPLES_FILE}); pass --resume to continue "
                             "that run or choose another --out")
    elif run_file.exists():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{run_file}: invalid JSON ({e})") from None
        diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
        if diff:
            k = diff[0]
            raise InputError(f"--resume: {run_file} was written with {k}={saved.get(k)!r}, this run has "
                             f"{k}={fingerprint.get(k)!r}; use the same settings or another --out")
    atomic_write_json(run_file, fingerprint)
