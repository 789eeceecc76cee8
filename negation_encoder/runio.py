"""Run-folder I/O: atomic writes, append-only JSONL logs, and one set of rules for output folders.

Every command that writes results (train, eval, t2i, seg, the testbed's comparisons and demo) goes
through this module, so they all behave alike:

- a file others read (results, configs, cards, images) is written to a temporary name and renamed, so
  a kill never leaves a half-written file (`atomic_write_*`);
- a log of finished work units is JSON lines, appended and flushed one unit at a time; on reopening,
  a torn last line (the kill landed mid-write) is cut off and never parsed, and any other bad line is a
  corrupted log, reported with its line number (`JsonlLog`);
- an output folder that already holds this command's results is refused unless the caller resumes
  it (with the same settings: the fingerprint saved in the folder must match key for key) or
  overwrites it (which removes only the files this command owns, never anything else kept there);
  `--resume` and `--overwrite` together are refused; a folder in use by another process is refused
  (`RunFolder`, locked with `filelock`, which the OS releases when a process dies), and an overwrite
  takes that lock before it removes anything;
- a write that fails (a full disk, a read-only folder, no permission, a quota) is an `OSError` naming
  the path and the cause, also when torch or safetensors reported it as an error of their own
  (`writing`), and leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .errors import InputError

LOCK_NAME = ".negenc.lock"


# ------------------------------------------------------------------------------------------------
# atomic writes


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


# Below this much free space a failed write is put down to the full disk (torch reports one only as
# "[enforce fail at inline_container.cc] unexpected pos"; safetensors as an IoError string).
LOW_SPACE_BYTES = 16 << 20
_PROBE_BYTES = 1 << 16


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _existing_dir(path: Path) -> Path:
    p = path if path.is_dir() else path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def write_failure_cause(path: str | os.PathLike) -> OSError | None:
    """The OS problem behind a library's failed write to `path`, found by looking at the place: the disk
    has (almost) no free space, or a small probe write there fails too (read-only, permission, quota).
    None when the place looks writable (then the failure was not the disk's)."""
    path = Path(path)
    where = _existing_dir(path)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    if free is not None and free < LOW_SPACE_BYTES:
        return OSError(errno.ENOSPC, f"No space left on device ({_size(free)} free at {where})", str(path))
    probe = where / f".negenc-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        return OSError(e.errno, e.strerror or str(e), str(path))
    finally:
        with suppress(OSError):
            probe.unlink()
    return None


@contextmanager
def writing(path: str | os.PathLike):
    """Name `path` in a failed write, and report a library's write failure as the OS problem it is.

    Python's own write errors carry no file name once the file is open (a full disk fails in `write`);
    torch and safetensors turn the OS error into a RuntimeError of their own. Both come out as an
    `OSError` naming `path` and the cause, which the CLI reports in one line (exit 1)."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise  # a bad value, not a failed write
    except Exception as e:  # torch's RuntimeError, safetensors' SafetensorError: look at the place
        cause = write_failure_cause(path)
        if cause is None:
            raise
        raise cause from e


def os_error_line(e: OSError) -> str:
    """'PATH: cause [ERRNO]' for an OSError (the CLI's one line for a failed write or read)."""
    name = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    cause = e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    where = f"{e.filename}: " if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    return f"{where}{cause}" + (f" [{name}]" if name else "")


def _replace(path: Path, tmp: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)`, then `os.replace` onto `path` (readers never see a partial file); a failed write
    removes its temporary file and names `path` (`writing`)."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                tmp.unlink()
            raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` via a temporary file and `os.replace` (readers never see a partial file)."""
    path = Path(path)
    return _replace(path, _tmp(path), lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def atomic_save_image(path: str | os.PathLike, image) -> Path:
    """A PIL image saved under a temporary name (same suffix, so PIL picks the format) and renamed."""
    path = Path(path)
    return _replace(path, path.with_name(path.stem + ".tmp" + path.suffix), image.save)


# ------------------------------------------------------------------------------------------------
# append-only JSONL logs


def repair_torn_tail(path: str | os.PathLike) -> int:
    """Cut everything after the last newline of `path` (a write a kill interrupted); return the bytes cut."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        pos, keep = size, 0
        while pos > 0:  # scan back in blocks for the last newline
            start = max(0, pos - 4096)
            fh.seek(start)
            idx = fh.read(pos - start).rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        return size - keep


class JsonlLog:
    """An append-only log of JSON objects, one per line, that survives kills.

    Opening repairs a torn last line (`repair_torn_tail`); `records()` parses every other line and
    reports a bad one as `FILE:LINE` (a corrupted log is never silently skipped). `append` writes each
    object as one full line and flushes (and fsyncs, unless `fsync=False`), so a line on disk means a
    finished unit of work. Nothing is created until the first append.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.torn_bytes = repair_torn_tail(self.path)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records())

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise InputError(f"{self.path}:{lineno}: not a JSON record ({type(e).__name__}); the log is "
                                     "corrupted: delete it or choose another output folder") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{self.path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                out.append(obj)
        return out

    def append(self, records: Iterable[dict]) -> None:
        records = list(records)
        if not records:
            return
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, sort_keys=True) + "\n")
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())

    def rewrite(self, records: Iterable[dict]) -> None:
        """Replace the whole log atomically (a resumed run cutting it back to its checkpoint)."""
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


# ------------------------------------------------------------------------------------------------
# output folders


class RunFolder:
    """The output folder of one command, with the rules of this module's docstring.

    `owned` names the files and folders this command writes there (relative paths): what makes the
    folder "hold results", and all that `--overwrite` removes. `fingerprint_name` is the file holding
    the settings of the run, compared key for key on `--resume`.
    """

    def __init__(self, out: str | os.PathLike, owned: Sequence[str], fingerprint_name: str = "run_config.json",
                 flag: str = "--out", can_resume: bool = True):
        self.out = Path(out)
        self.owned = tuple(owned)
        self.fingerprint_path = self.out / fingerprint_name
        self.flag = flag
        self.can_resume = can_resume  # commands that cannot continue a run only offer --overwrite

    def existing(self) -> list[str]:
        """The owned entries present now (folders with a trailing slash)."""
        return [name + ("/" if (self.out / name).is_dir() else "") for name in self.owned if (self.out / name).exists()]

    def check(self, resume: bool = False, overwrite: bool = False, fingerprint: dict | None = None) -> None:
        """Raise InputError (one line) if this folder cannot take the run as asked. Changes nothing."""
        if resume and overwrite:
            raise InputError("--resume and --overwrite contradict each other; pass one")
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.flag} {self.out}: is a file, expected a folder for the results")
        existing = self.existing()
        if existing and not (resume or overwrite):
            how = "pass --resume to continue that run or --overwrite to replace it" if self.can_resume \
                else "pass --overwrite to replace it"
            raise InputError(f"{self.flag} {self.out}: already holds results ({', '.join(existing)}); {how}")
        if resume and fingerprint is not None and self.fingerprint_path.exists():
            try:
                saved = json.loads(self.fingerprint_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise InputError(f"{self.fingerprint_path}: unreadable ({type(e).__name__}); use --overwrite") from None
            diff = fingerprint_diff(saved, fingerprint)
            if diff:
                raise InputError(f"--resume: {self.out} was made with other settings ({'; '.join(diff)}); resume with "
                                 "the same settings, or use another output folder or --overwrite")

    def prepare(self, resume: bool = False, overwrite: bool = False, fingerprint: dict | None = None) -> None:
        """`check`, then create the folder, remove the owned entries on overwrite, and save the fingerprint.

        Overwriting takes the folder's lock before it removes anything (this process may already hold it:
        the lock is re-entrant), so a run still using the folder (a `--resume` in another process) is
        refused in one line instead of losing its files mid-run."""
        self.check(resume, overwrite, fingerprint)
        self.out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            with self.lock():
                self.remove_owned()
                if fingerprint is not None:
                    atomic_write_json(self.fingerprint_path, fingerprint)
        elif fingerprint is not None:
            atomic_write_json(self.fingerprint_path, fingerprint)

    def remove_owned(self) -> None:
        for name in self.owned:
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    @contextmanager
    def lock(self):
        """Hold the folder for this process; another process asking for it gets one line, exit 2.

        Re-entrant within the process (a command that holds its folder may overwrite or write into it),
        and the process's held folders are listed by `held_folders` (the CLI's message on a kill)."""
        from filelock import FileLock, Timeout

        self.out.mkdir(parents=True, exist_ok=True)
        key = str((self.out / LOCK_NAME).resolve())
        if key in _HELD:
            _HELD[key][1] += 1
        else:
            lock = FileLock(str(self.out / LOCK_NAME), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                raise InputError(f"{self.flag} {self.out}: another run is using this folder (it holds "
                                 f"{self.out / LOCK_NAME}); wait for it to finish") from None
            _HELD[key] = [lock, 1, self]
        try:
            yield self
        finally:
            _HELD[key][1] -= 1
            if _HELD[key][1] == 0:
                _HELD.pop(key)[0].release()


# lock file (resolved) -> [FileLock, how many `lock()` contexts hold it, the RunFolder]: one OS lock per
# folder and process, so nested holders never refuse each other
_HELD: dict[str, list] = {}


def held_folders() -> list[RunFolder]:
    """The run folders this process holds now, first taken first."""
    return [entry[2] for entry in _HELD.values()]


def fingerprint_diff(saved: dict, now: dict) -> list[str]:
    """'key (old -> new)' for every key whose value differs (a key missing on one side counts)."""
    return [f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k)]
