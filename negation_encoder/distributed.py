"""The processes of one evaluation run under `accelerate launch` / `torchrun`, and their part files.

Why: every evaluation command (`negenc eval`, `negenc t2i ...`, `negenc seg ...`) runs unchanged under
a launcher. Each process takes a disjoint, deterministic share of the work units (`Processes.share`),
writes what it finishes to its own part file (`PartLogs`), and the main process merges the parts and
writes the results once. The processes meet only through accelerate: its `PartialState` (which sets
up torch.distributed from the launcher's environment: gloo on CPU, NCCL on GPUs), `gather_object` and
`wait_for_everyone`. Without a launcher there is one process and every call below is the identity.

Exactness: batched float sums depend on a batch's composition, so callers form the batch list exactly
as one process would and hand whole batches to processes (`share` of the batch list); a batch is then
computed the same whichever process runs it, and N processes give one process's numbers.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from .devices import resolve_device
from .errors import InputError
from .runio import JsonlLog, atomic_write_json, fingerprint_diff

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place among the launched ones: `rank` of `world` (0 of 1 without a launcher)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """Items rank, rank + world, ...: disjoint across processes, together the whole list, the same on
        every call (round-robin, so consecutive batches of similar cost spread over the processes)."""
        return list(items[self.rank::self.world])

    def gather(self, obj: Any) -> list:
        """`obj` of every process, in rank order, on every process (pickled through torch.distributed)."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def wait(self) -> None:
        """Block until every process gets here."""
        if self.world > 1:
            _state().wait_for_everyone()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the main process only (creating the output folder, writing merged results) while
        the others wait; every process returns its result, or raises its InputError with the same one
        line, so a refused folder stops every process with exit 2 rather than leaving them waiting."""
        if self.world == 1:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except InputError as e:
                error = str(e)
            except BaseException as e:
                self.gather((None, f"the main process failed ({type(e).__name__}: {e})", False))
                raise
        result, error, ok = self.gather((result, error, True))[0]
        if error is not None:
            if ok:
                raise InputError(error)
            raise RuntimeError(error)
        return result

    def device(self, spec: str | None = "auto", flag: str = "--device") -> torch.device:
        """The torch device of this process: `auto` / `cuda` under several processes is this process's
        own GPU (the launcher's LOCAL_RANK, as accelerate assigns it); anything else as `resolve_device`."""
        device = resolve_device(spec, flag)
        if self.world > 1 and device.type == "cuda" and device.index is None:
            return _state().device
        return device


def processes() -> Processes:
    """The launched processes this one belongs to. Only a launcher's WORLD_SIZE > 1 touches accelerate's
    state (and initialises torch.distributed); a plain run is one process and sets nothing up."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    state = _state()
    return Processes(state.process_index, state.num_processes)


def _state():
    """accelerate's process state; on a machine without CUDA it must be told so to use gloo (as the
    trainer's `Accelerator(cpu=...)` is), or it would see one process."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    _destroy_group_at_exit()
    return state


@functools.cache
def _destroy_group_at_exit() -> None:
    """Shut the process group down before the interpreter does. A gloo group still alive at exit can abort
    a process after its work is written ("terminate called without an active exception", SIGABRT), which
    torchrun then reports as a failed run. Registered once per process; several commands run in one
    process (tests/_dist_eval.py) keep the group until the end."""
    import atexit

    def destroy() -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    atexit.register(destroy)


# ------------------------------------------------------------------------------------------------
# part files

_PART = re.compile(r"^(?P<stem>.+)\.part-(?P<rank>\d+)-of-(?P<world>\d+)\.jsonl$")


class PartLogs:
    """The part files of one JSONL log of a sharded run: `<folder>/parts/<stem>.part-<r>-of-<n>.jsonl`,
    one per process that finished something, each beside a `.json` holding the settings it was
    written with.

    Every process reads every part (of any process count: work units are keyed, so a run killed with 4
    processes resumes with 2) and appends only to its own. A part written with other settings than this
    run's is refused (`check`: one line, exit 2), never merged. The main process merges the parts into
    the run's log and then removes them (`remove`), so a finished folder holds the merged log only.
    """

    def __init__(self, folder: str | os.PathLike, stem: str, settings: dict, procs: Processes):
        self.dir = Path(folder) / "parts"
        self.stem = stem
        self.settings = json.loads(json.dumps(settings, default=str))  # what a JSON round trip gives back
        self.procs = procs
        self._mine: JsonlLog | None = None

    @property
    def own_path(self) -> Path:
        return self.dir / f"{self.stem}.part-{self.procs.rank}-of-{self.procs.world}.jsonl"

    def paths(self) -> list[Path]:
        """Every part of this log present, ordered by (process count, rank)."""
        found = []
        for p in self.dir.glob(f"{self.stem}.part-*-of-*.jsonl") if self.dir.is_dir() else ():
            m = _PART.match(p.name)
            if m and m["stem"] == self.stem:
                found.append((int(m["world"]), int(m["rank"]), p))
        return [p for _, _, p in sorted(found)]

    def check(self) -> None:
        """Raise InputError naming the first part whose saved settings differ from this run's."""
        for path in self.paths():
            side = path.with_suffix(".json")
            try:
                saved = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                saved = None
            if saved != self.settings:
                why = "; ".join(fingerprint_diff(saved, self.settings)) if isinstance(saved, dict) else \
                    f"{side.name} missing or unreadable"
                raise InputError(f"{path}: a part written by another configuration ({why}); resume with the "
                                 "same settings, or use --overwrite or another output folder")

    def repair(self) -> None:
        """Cut the torn last line of every part (a kill mid-write). The main process does this while the
        others wait, so nobody reads a file while it is being truncated."""
        for path in self.paths():
            JsonlLog(path)

    def records(self) -> list[dict]:
        return [r for path in self.paths() for r in JsonlLog(path).records()]

    def append(self, records: list[dict]) -> None:
        """Append to this process's own part (created, with its settings file, on first use)."""
        if not records:
            return
        if self._mine is None:
            atomic_write_json(self.own_path.with_suffix(".json"), self.settings)
            self._mine = JsonlLog(self.own_path)
        self._mine.append(records)

    def remove(self) -> None:
        """Delete every part of this log (after the merged log was written)."""
        for path in self.paths():
            path.with_suffix(".json").unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()
