"""Atomic writes for the report's outputs: a reader (a browser, Snakemake) sees the old file or
the whole new one, never half a report. report/ may not import densenet/, hence its own copy."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to path via a temporary file in the same directory and an atomic rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)  # mkstemp makes 0600; a report is meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_frame(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """A pandas DataFrame as CSV, atomically."""
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))
