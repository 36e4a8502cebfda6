"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Each writer fills a temporary file in the destination's directory, flushes and fsyncs it, then
renames it over the destination (rename is atomic within one filesystem) and fsyncs the
directory, so the rename itself survives a power loss. If anything fails (disk full, kill),
the temporary file is removed where possible and the destination is untouched; a leftover
``.tmp-*`` file from a kill -9 is never read by anything (remove_stale_temps clears them when
the directory's single writer starts again).
"""

import csv
import io
import json
import os
import tempfile
from typing import Any, Iterable, List, Mapping, Sequence


def write_bytes(path: str, data: bytes) -> None:
    """Write bytes to path atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
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
    _fsync_dir(directory)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the data itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(directory: str) -> List[str]:
    """Delete the ``.tmp-*`` files a killed writer left in directory; returns their names.
    Only for a directory whose one writer is the caller (a cell directory, say)."""
    removed = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith(".tmp-"):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any) -> None:
    """JSON with sorted keys; NaN/inf are written as null so any JSON reader accepts the file."""
    write_text(path, json.dumps(_finite(obj), indent=1, sort_keys=True) + "\n")


def write_csv(path: str, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text(path, buf.getvalue())


def save_torch(path: str, obj: Any) -> None:
    """torch.save through an in-memory buffer, then an atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def _finite(obj):
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
