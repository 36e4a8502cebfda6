"""Argument types and the options several subcommands share (standard library only). Bad
values raise argparse.ArgumentTypeError with what was expected, which the parser reports in
one line naming the argument."""

import argparse
import math
from typing import Callable, Optional

from . import argcheck

__all__ = [
    "ON_OFF",
    "SEED_MAX",
    "positive_int",
    "non_negative_int",
    "seed_int",
    "bounded_int",
    "positive_float",
    "probability",
    "out_dir",
    "out_file",
    "add_numerics",
    "add_overlap",
    "add_cpu_malloc",
]

ON_OFF = ("on", "off")
SEED_MAX = 2**32 - 1


def positive_int(text: str) -> int:
    return bounded_int(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    return bounded_int(text, 0, None, "a non-negative integer")


def seed_int(text: str) -> int:
    # The seed range every tool of a study shares (workflow/schemas/config.schema.yaml says the
    # same, so a study cannot plan a cell its trainer refuses): 32 bits, as numpy's legacy seed.
    return bounded_int(text, 0, SEED_MAX, "an integer in 0..%d" % SEED_MAX)


def bounded_int(text: str, low: int, high: Optional[int], expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError("expected %s, got %r" % (expected, text))
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (--lr): `nan` would end as a `diverged` cell, not an error."""
    value = _float(text, "a finite positive number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("expected a finite positive number, got %r" % text)
    return value


def probability(text: str) -> float:
    """--dropout: 1 would drop every activation, so the range is [0, 1)."""
    value = _float(text, "a number in [0, 1)")
    if not 0 <= value < 1:  # also false for nan
        raise argparse.ArgumentTypeError("expected a number in [0, 1), got %r" % text)
    return value


def _float(text: str, expected: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected %s, got %r" % (expected, text)) from None


def out_dir(text: str) -> str:
    """--out of train and gradcheck: a directory to create or reuse, checked before any work."""
    return _checked(text, argcheck.dir_problem)


def out_file(text: str) -> str:
    """--out of bench: a JSON file, or a directory to write bench.json/probe.json into."""
    return _checked(text, argcheck.path_problem)


def _checked(text: str, problem_of: Callable[[str], Optional[str]]) -> str:
    problem = problem_of(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_numerics(p: argparse.ArgumentParser) -> None:
    """The environment of every computing subcommand: numerics flags, seed, device, canary."""
    p.add_argument("--cudnn", choices=ON_OFF, default="on")
    p.add_argument("--tf32", choices=ON_OFF, default="off")
    p.add_argument("--deterministic", choices=ON_OFF, default="off")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--canary", choices=("none", "noncontig-grad"), default="none")


def add_overlap(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overlap",
        choices=ON_OFF,
        default="on",
        help="with the CUDA-graph step (not --compile): convolution weight gradients on a "
        "second stream, same kernels and bits (densenet/overlap.py)",
    )


def add_cpu_malloc(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cpu-malloc",
        choices=("reuse", "system"),
        default="reuse",
        help="on a CPU device: reuse = glibc keeps freed tensors' memory for the next step "
        "(no per-tensor mmap, no trimming; same values, fewer page faults), system = glibc's "
        "defaults (densenet/hostmem.py)",
    )
