"""Count the host syncs inside a block of CUDA work, to show that an epoch has none.

torch's CUDA sync debug mode ("warn") makes the synchronizing calls it knows of (``.item()``,
blocking device-to-host copies, ops whose output size depends on the data, ...) raise the
warning "called a synchronizing CUDA operation". The counter records warnings for the block,
counts those, and hands every other warning on unchanged. Not every sync is covered: torch
names the distributed and sparse namespaces, and on an H200 with torch 2.11 the explicit
``torch.cuda.synchronize()`` around each graph capture was not reported either (BENCHMARKS.md).
So a count of 0 means "no implicit sync that torch reports", which is what the eager step's
per-step ``loss.item()`` is (one per step there).
Off CUDA, or on a torch without the mode (< 1.10), the count is None: not measured, never 0.
"""

import warnings

import torch

SYNC_MESSAGE = "called a synchronizing CUDA operation"


def sync_debug_available(device: torch.device) -> bool:
    return device.type == "cuda" and hasattr(torch.cuda, "set_sync_debug_mode")


class HostSyncCounter(object):
    """``with HostSyncCounter(device) as c: ...``; then ``c.count`` (None where not measured).

    ``set_mode`` is the switch (torch.cuda.set_sync_debug_mode by default); tests pass a
    stand-in to check the counting without a GPU."""

    def __init__(self, device, set_mode=None):
        self.enabled = set_mode is not None or sync_debug_available(device)
        self.set_mode = set_mode or getattr(torch.cuda, "set_sync_debug_mode", None)
        self.count = None
        self._catch = None
        self._records = None

    def __enter__(self):
        if self.enabled:
            self._catch = warnings.catch_warnings(record=True)
            self._records = self._catch.__enter__()
            warnings.simplefilter("always")  # each sync is its own warning, none deduplicated
            self.set_mode("warn")
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        self.set_mode("default")
        self._catch.__exit__(*exc)
        self.count = 0
        for w in self._records:
            if SYNC_MESSAGE in str(w.message):
                self.count += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return False
