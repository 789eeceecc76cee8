"""The output folder of one training run: one run at a time, nothing lost, a resumable log.

Layout: `checkpoints/step_N/` (accelerate state + trainer_state.json), `train_log.jsonl`,
`training_config.json`, `model/` (the export) and `image_cache/`. Rules:
- a folder that already holds a run is refused unless the caller resumes it or passes `overwrite`
  (then the old run's files, not the image cache, are removed explicitly);
- the folder is locked (`runio.RunFolder.lock`), so a second run into it stops with one line;
- checkpoints are written to `step_N.tmp` and renamed, and rotated keeping the newest `keep`
  (accelerate's own rotation needs its automatic `checkpoint_<i>` naming, which is neither atomic
  nor keyed by optimizer step, so we keep ours);
- the log's first line is the run's header (the records each loss term trains on); a resumed run
  cuts the entries after it back to the checkpoint's step, so no step is logged twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..runio import JsonlLog, RunFolder, atomic_write_text, writing

RUN_FILES = ("checkpoints", "train_log.jsonl", "training_config.json", "model")
STATE = "trainer_state.json"

__all__ = ["RUN_FILES", "STATE", "RunDir", "atomic_write_text"]


class RunDir(RunFolder):
    """A training run's folder: `RunFolder`'s rules (refuse / resume / overwrite / lock) plus checkpoints
    and the log. The image cache is not a run file: overwrite keeps it (it is keyed by content)."""

    def __init__(self, out: str | os.PathLike):
        super().__init__(out, RUN_FILES, fingerprint_name="training_config.json")
        self.log_path = self.out / "train_log.jsonl"

    def remove_run(self) -> None:
        """--overwrite: delete the previous run's files (never the image cache, which is keyed by content)."""
        self.remove_owned()

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
        """save_state into `step_N.tmp`, then rename: a crash never leaves a half-written step_N. A failed
        save (a full disk, a read-only folder) removes `step_N.tmp` and is raised as the OS error it is
        (`runio.writing`: torch reports a full disk only as "unexpected pos"), so `--resume` continues from
        the checkpoint before it."""
        root = self.out / "checkpoints"
        final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
        main = accelerator.is_main_process
        try:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
                with writing(root):
                    root.mkdir(parents=True, exist_ok=True)
            accelerator.wait_for_everyone()
            with writing(tmp):
                accelerator.save_state(str(tmp))
            accelerator.wait_for_everyone()
            if main:
                with writing(tmp / STATE):
                    (tmp / STATE).write_text(json.dumps({"step": step, **state}, indent=2), encoding="utf-8")
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(tmp, final)
        except BaseException:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if main:
            for _, old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def stopped_note(self, done: int, steps: int) -> str:
        """Where a run stopped after `done` finished steps stood and how to go on, for the CLI's last line."""
        found = self.latest()
        last = f"the last checkpoint is {found[1]}" if found else \
            "no checkpoint yet (--resume starts again from step 0)"
        return f"after step {done} of {steps}; {last}; continue with the same command and --resume"

    # ---- the log
    def start_log(self, step: int, header: dict) -> None:
        """Begin the log at `step` (0 for a fresh run): `header` as its first line, then the step entries
        up to `step` (a resumed run re-logs what follows). The header of a resumed run is the one it
        started with: a resume is refused when the config or data changed, and those decide it."""
        log = JsonlLog(self.log_path, fsync=False)
        kept = [e for e in log.records() if isinstance(e.get("step"), int) and e["step"] <= step]
        log.rewrite([header, *kept])

    def append_log(self, entry: dict) -> None:
        JsonlLog(self.log_path, fsync=False).append([entry])
