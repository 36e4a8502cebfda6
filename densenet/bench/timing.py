"""Timers and memory probes for the benchmark.

Step times come from CUDA events on a GPU (recorded around each step on the stream, read after
one synchronize at the end of a block, so timing adds no host sync inside the block) and from
perf_counter on the CPU, where every op is synchronous anyway. Peak memory comes from the CUDA
caching allocator, or on Linux CPUs from the kernel's resident-set high-water mark (VmHWM),
which /proc/self/clear_refs can reset; elsewhere it is recorded as unavailable, with the reason.
HostPeak is the process's whole resident set at its peak over a phase (what a scheduler's
memory limit sees), for the cost probe.
"""

import gc
import math
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch

from .. import hostmem

__all__ = ["summarize", "sync", "time_calls", "PeakMemory", "HostPeak", "finite_positive"]


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    """{"median", "min", "max", "n"} of a list of numbers (median of an even count: the mean of
    the middle two)."""
    v = sorted(values)
    n = len(v)
    if not n:
        return {"median": None, "min": None, "max": None, "n": 0}
    mid = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return {"median": mid, "min": v[0], "max": v[-1], "n": n}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(
    fn: Callable[[int], Any], count: int, device: torch.device
) -> Tuple[List[float], float]:
    """Call fn(i) for i in range(count); return (per-call ms list, wall ms of the whole block).

    The block's wall time ends after a device synchronize, so it counts finished work."""
    sync(device)
    t0 = time.perf_counter()
    if device.type == "cuda":
        marks = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(count)
        ]
        for i in range(count):
            marks[i][0].record()
            fn(i)
            marks[i][1].record()
        torch.cuda.synchronize()
        per_call = [start.elapsed_time(end) for start, end in marks]
    else:
        per_call = []
        for i in range(count):
            t = time.perf_counter()
            fn(i)
            per_call.append(1000.0 * (time.perf_counter() - t))
    return per_call, 1000.0 * (time.perf_counter() - t0)


def _proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError("%s not in /proc/self/status" % field)


def _trim_heap():
    """Return freed heap pages to the OS (glibc), so a later phase's RSS is its own."""
    libc = hostmem.glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _mmap_threshold(nbytes):
    """glibc: allocations of at least nbytes get their own mmap, unmapped on free. A small
    threshold makes the RSS follow live tensors (glibc's default threshold grows up to 32 MiB
    after frees, and the heap then keeps freed activations resident and reuses them, so a
    later phase would not show its own peak). Per-allocation mmaps and heap trimming are
    turned back on first: `--cpu-malloc reuse` turns both off (densenet/hostmem.py)."""
    hostmem.release_freed_memory()
    hostmem.mallopt(hostmem.M_MMAP_THRESHOLD, nbytes)


class PeakMemory(object):
    """Peak memory of a phase, as growth over the memory in use when the phase started.

    CUDA: max_memory_allocated (reset at start) minus memory_allocated at start.
    CPU (Linux): VmHWM (reset at start via clear_refs) minus VmRSS at start, with glibc's mmap
    threshold lowered for the phase (see _mmap_threshold); an upper bound on what the phase
    allocated, since the process also maps code and caches on first use.
    """

    def __init__(self, device):
        self.device = device
        self.base = None
        self.reason = None
        if device.type == "cuda":
            self.method = "cuda max_memory_allocated growth over the phase"
        else:
            self.method = (
                "Linux VmHWM growth over the phase (clear_refs reset; glibc mmap and trim "
                "thresholds 128 KiB during it, malloc_trim first)"
            )

    def start(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        _mmap_threshold(128 * 1024)
        _trim_heap()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
            self.base = _proc_status_kib("VmRSS") * 1024
        except OSError as exc:
            self.base, self.reason = None, "peak RSS not resettable here (%s)" % exc

    def stop(self):
        """Peak growth in MiB since start(), or None (with self.reason) if not measurable."""
        if self.base is None:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _proc_status_kib("VmHWM") * 1024
        return max(peak - self.base, 0) / 2.0**20

    def done(self, cpu_malloc="reuse"):
        """After the last phase: give glibc its usual large-allocation threshold back (its
        default maximum, 32 MiB), then the process's --cpu-malloc policy, so that timings
        after the memory phases see the heap a training process with that policy sees. Returns
        hostmem.configure's record."""
        if self.device.type != "cuda":
            _mmap_threshold(32 * 2**20)
        return hostmem.configure(cpu_malloc, self.device)


class HostPeak(object):
    """The process's resident-set peak over a phase in MiB, absolute: the interpreter, the
    libraries (a CUDA context's too) and the data held count, as they count against a job's
    memory limit. Linux: VmHWM, reset at start() via clear_refs after a garbage collection and
    malloc_trim, so an earlier phase's freed heap is not counted while the phase itself runs
    under the process's own --cpu-malloc policy (a training process's heap). Where the reset is
    refused (no /proc, an old kernel, a sandbox): ru_maxrss, the peak since the process began,
    an upper bound for every phase after the first; `method` says which.
    """

    VMHWM = "VmHWM reset per model (clear_refs)"
    MAXRSS = "ru_maxrss since the process began (peak RSS not resettable here)"

    def __init__(self):
        self.method = None

    def start(self):
        gc.collect()
        _trim_heap()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
            _proc_status_kib("VmHWM")
            self.method = self.VMHWM
        except (OSError, ValueError):
            self.method = self.MAXRSS

    def peak_mb(self):
        if self.method == self.VMHWM:
            return _proc_status_kib("VmHWM") / 1024.0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
        return peak / (2.0**20 if sys.platform == "darwin" else 1024.0)


def finite_positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0
