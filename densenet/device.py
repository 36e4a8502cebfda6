"""Device choice and preflight: which torch device a command runs on, Skip where it cannot
run here, and the peak memory it used there."""

import resource

import torch

from . import compiled, envinfo
from .outcome import Skip

__all__ = ["resolve_device", "preflight", "peak_mem_mb"]


def resolve_device(name: str) -> torch.device:
    """The torch device for --device; Skip when the GPU cannot run this torch build (also
    under auto: quietly training on the CPU instead would be a silent fallback)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        support = envinfo.cuda_arch_support()
        if not support["supported"]:
            raise Skip(support["reason"])
    return torch.device(name)


def preflight(device_name: str, compile_on: bool = False) -> torch.device:
    """The device of a training run; Skip when it, or --compile on, cannot run here."""
    device = resolve_device(device_name)
    why_not = compiled.support(device) if compile_on else None
    if why_not:
        raise Skip("--compile on: %s" % why_not)
    return device


def peak_mem_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA's allocator peak, or the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # Peak resident set of the process (Linux reports KiB): an upper bound, labelled in env.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
