"""Files the command line writes (`--output`, `--qr-png`, …) or reads (`conversions import`).

A path that cannot be written or read is the user's mistake, not ours: one line
`error: cannot write PATH: <reason>` and exit status 2 (pos.cli.main prints every PosError so),
never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from pos.errors import PosError


class FilePathError(PosError):
    """A file named on the command line cannot be written or read (missing folder, no
    permission, a directory, a full disk)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_output(path: str, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path`, or raise FilePathError saying why not."""
    try:
        if isinstance(data, bytes):
            Path(path).write_bytes(data)
        else:
            Path(path).write_text(data, encoding="utf-8")
    except OSError as exc:
        raise FilePathError(f"cannot write {path}: {_reason(exc)}") from None


def read_input(path: str, encoding: str = "utf-8-sig") -> str:
    """The text of `path`, or FilePathError saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding=encoding)
    except OSError as exc:
        raise FilePathError(f"cannot read {path}: {_reason(exc)}") from None
    except UnicodeDecodeError:
        raise FilePathError(f"cannot read {path}: it is not {encoding} text") from None
