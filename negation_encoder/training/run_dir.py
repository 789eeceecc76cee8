"""The output folder of one training run: one run at a time, nothing lost, a resumable log.

Layout: `checkpoints/step_N/` (accelerate state + trainer_state.json), `train_log.jsonl`,
`training_config.json`, `model/` (the export) and `image_cache/`. Rules:
- a folder that already holds a run is refused unless the caller resumes it or passes `overwrite`
  (then the old run's files, not the image cache, are removed explicitly);
- a lock file names the process holding the folder, so a second run into it stops with one line;
- checkpoints are written to `step_N.tmp` and renamed, and rotated keeping the newest `keep`
  (accelerate's own rotation needs its automatic `checkpoint_<i>` naming, which is neither atomic
  nor keyed by optimizer step, so we keep ours);
- a resumed run cuts the log back to the checkpoint's step, so no step is logged twice.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

LOCK = ".negenc-train.lock"
RUN_FILES = ("checkpoints", "train_log.jsonl", "training_config.json", "model")
STATE = "trainer_state.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file others read (logs, configs, cards) via a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunDir:
    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.log_path = self.out / "train_log.jsonl"
        self.lock_path = self.out / LOCK

    # ---- checks before any compute
    def check(self, resume: bool, overwrite: bool) -> None:
        """Raise InputError if this folder cannot take the run as asked."""
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {self.out}: is a file, expected a folder for the run's outputs")
        holder = self._holder()
        if holder is not None and self._alive(holder):
            raise InputError(f"--out {self.out}: another run is using this folder (pid {holder.get('pid')} on "
                             f"{holder.get('host')}, since {holder.get('started')}); wait for it, or delete "
                             f"{self.lock_path} if that process is gone")
        existing = self.existing_run_files()
        if existing and not resume and not overwrite:
            raise InputError(f"--out {self.out}: already holds a training run ({', '.join(existing)}); pass --resume "
                             "to continue it or --overwrite to replace it")
        if resume and overwrite:
            raise InputError("--resume and --overwrite contradict each other; pass one")

    def existing_run_files(self) -> list[str]:
        return [name + ("/" if (self.out / name).is_dir() else "") for name in RUN_FILES if (self.out / name).exists()]

    def remove_run(self) -> None:
        """--overwrite: delete the previous run's files (never the image cache, which is keyed by content)."""
        for name in RUN_FILES:
            path = self.out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # ---- the lock
    def _holder(self) -> dict | None:
        try:
            return json.loads(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    @staticmethod
    def _alive(holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return True  # another machine's process: we cannot tell, so respect the lock
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except (OSError, ValueError):
            return False
        return True

    @contextmanager
    def lock(self):
        """Hold the folder for this process; a stale lock of a dead process on this host is taken over."""
        self.out.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and self._alive(holder):
                    raise InputError(f"--out {self.out}: another run is using this folder (pid {holder.get('pid')} "
                                     f"on {holder.get('host')}, since {holder.get('started')})") from None
                self.lock_path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            break
        try:
            yield
        finally:
            if (self._holder() or {}).get("pid") == me["pid"]:
                self.lock_path.unlink(missing_ok=True)

    # ---- checkpoints
    def checkpoints(self) -> list[tuple[int, Path]]:
        root = self.out / "checkpoints"
        if not root.is_dir():
            return []
        found = [(int(d.name[5:]), d) for d in root.iterdir()
                 if d.is_dir() and d.name.startswith("step_") and d.name[5:].isdigit() and (d / STATE).exists()]
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    @staticmethod
    def read_state(path: Path) -> dict:
        return json.loads((path / STATE).read_text(encoding="utf-8"))

    def save_checkpoint(self, accelerator, step: int, keep: int, state: dict) -> None:
        """save_state into `step_N.tmp`, then rename: a crash never leaves a half-written step_N."""
        root = self.out / "checkpoints"
        final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            root.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / STATE).write_text(json.dumps({"step": step, **state}, indent=2), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for _, old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    # ---- the log
    def truncate_log(self, step: int) -> None:
        """Keep the entries up to `step` (a resumed run re-logs what follows); drop a torn last line."""
        if not self.log_path.exists():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("step", 0) <= step:
                kept.append(line)
        atomic_write_text(self.log_path, "".join(x + "\n" for x in kept))

    def append_log(self, entry: dict) -> None:
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
