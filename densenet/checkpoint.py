"""Checkpoints that are verified before they are trusted.

A checkpoint is written atomically (atomic.py), so a kill leaves the previous one intact. On
top of that the payload carries its own SHA-256: a truncated or bit-flipped file is named in
one line and never loaded (the caller moves it aside and starts the cell again).
"""

import hashlib
import io
import os
from typing import Any

import torch

from . import atomic
from .compat import accepts

FORMAT = "densenet-harness-checkpoint-1"


class CheckpointError(Exception):
    """The checkpoint exists but cannot be trusted; the message names the file and why."""


def save(path: str, state: Any) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    atomic.save_torch(
        path, {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
    )


def _torch_load(src):
    # The state holds numpy and Python RNG states, which weights_only=True (the default since
    # torch 2.6) refuses; torch < 1.13 has no such argument.
    if accepts(torch.load, "weights_only"):
        return torch.load(src, map_location="cpu", weights_only=False)
    return torch.load(src, map_location="cpu")


def load(path: str) -> Any:
    """Return the saved state, or raise CheckpointError naming what is wrong."""
    try:
        outer = _torch_load(path)
    except Exception as exc:
        raise CheckpointError(
            "checkpoint %s is unreadable (%s)" % (path, _first_line(exc))
        ) from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError("checkpoint %s is not a %s file" % (path, FORMAT))
    payload = outer.get("payload") or b""
    if hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError("checkpoint %s fails its SHA-256 check (corrupted)" % path)
    return _torch_load(io.BytesIO(payload))


def quarantine(path: str, suffix: str = ".corrupt") -> str:
    """Move an untrustworthy (or, with suffix .stale, obsolete) checkpoint aside: kept for
    inspection, never read again."""
    bad = path + suffix
    os.replace(path, bad)
    return bad


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
