"""What the CLI tests share: one line on stderr and an exit code; an output folder on a read-only mount."""

from __future__ import annotations

import errno
from pathlib import Path

from negation_encoder.cli import main


def one_line(capsys, argv: list[str], code: int = 2) -> str:
    """Run `negenc argv` in-process; it must exit `code` with exactly one line on stderr, returned."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, (rc, err)
    assert len(err.splitlines()) == 1, err
    return err


def read_only(monkeypatch, out: Path) -> None:
    """`out` sits on a read-only mount: creating anything under it fails as mkdir does there (naming the
    path). Tests run as root, which ignores chmod, so the mount is simulated where mkdir meets it."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
