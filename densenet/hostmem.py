"""How glibc's malloc serves a CPU training process (`--cpu-malloc reuse|system`).

PyTorch's CPU tensors come from malloc. glibc gives every allocation above its mmap threshold
(128 KiB, rising to at most 32 MiB after frees) its own mmap and unmaps it on free, and trims
the heap top when it holds more than the trim threshold free. A training step allocates and
frees the same large activations every step, so under those defaults the kernel zero-fills
fresh pages for them every step: ~60,000 page faults per DenseNet-BC-40 step at batch 64 on a
CPU, ~480,000 for BC-100 (whose block-1 features exceed 32 MiB, so they are mmapped always).

`reuse` turns both off (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB): freed activations stay in the
heap and the next step reuses them, as the CUDA caching allocator does on a GPU. The same
kernels run on the same values (BENCHMARKS.md, scripts/malloc_bench.py: bitwise-equal cells),
only faster; the price is that the process keeps its peak heap resident, and a phase that
allocates ever larger blocks (a big evaluation batch) fragments the heap, hence the small
evaluation batch on CPU (densenet/recipe.py). glibc only: elsewhere (macOS, musl) nothing is
changed and the record says so.
"""

import ctypes
from typing import Any, Optional

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_MMAP_MAX_DEFAULT, GLIBC_TRIM_THRESHOLD_DEFAULT = 65536, 128 * 1024
TRIM_THRESHOLD_REUSE = 2**31 - 1  # mallopt takes an int: 2 GiB, in effect never


def glibc() -> Optional[Any]:
    """glibc's handle, or None where the C library is another (or lacks mallopt)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def mallopt(param: int, value: int) -> bool:
    """True if glibc took the setting."""
    libc = glibc()
    return bool(libc is not None and libc.mallopt(param, int(value)))


def configure(policy: str, device: Any) -> str:
    """Apply --cpu-malloc for a process computing on `device`; returns the record for env.json
    `flags.cpu_malloc`.

    Only a CPU device is changed: on a GPU the activations live in the CUDA caching allocator
    and host malloc is not on the step's path."""
    if policy not in ("reuse", "system"):
        raise ValueError("cpu_malloc: expected reuse or system, got %r" % (policy,))
    if device.type != "cpu":
        return "not applicable on %s" % device.type
    if policy == "system":
        return "system (glibc defaults)"
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_REUSE)):
        return "system (no glibc mallopt here)"
    return "reuse (glibc M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB)"


def release_freed_memory() -> None:
    """Give glibc back its per-allocation mmaps and its default trim threshold, so that freed
    memory leaves the process again (the bench's memory phases need that for the resident set
    to follow live tensors, densenet/bench/timing.py)."""
    mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX_DEFAULT)
    mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD_DEFAULT)
