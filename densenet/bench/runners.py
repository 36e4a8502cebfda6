"""The step runners of the benchmark and the cost probe: the environment they run in (threads,
device, numerics flags, as train sets them), the images and the shared batches, one Runner per
step variant (eager reference, fast step, efficient mode, compiled, serial, fed), and
bench_steps: memory per runner while it warms up, then interleaved timing rounds (airbench
style: the runners take turns in rounds, so that load from other processes hits every side
alike; each figure is the median step after warmup; nothing is evaluated in the timed region).
"""

import argparse
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .. import data, hostmem, numerics
from ..augment import Normalizer, augment
from ..compiled import compile_model
from ..compiled import support as compile_support
from ..device import resolve_device
from ..feed import epoch_batches
from ..kernels import profile_rows, profiler_activities
from ..models import build_model
from ..overlap import wanted as overlap_wanted
from ..recipe import base_lr, make_optimizer
from ..steps import Accumulator, make_step
from .timing import PeakMemory, summarize, time_calls

__all__ = [
    "RUNNERS",
    "COMPILED",
    "SERIAL",
    "FED",
    "setup",
    "load_images",
    "make_batches",
    "Runner",
    "agreement",
    "profile_step",
    "bench_steps",
]

# name -> (fast step, efficient mode, compiled). "eager" is the reference loop with its
# per-step sync; "compiled" (the fast step of a torch.compile'd model) only with --compile on.
# "fast" and "efficient" take --overlap; "fast-serial" is the fast step without it, the other
# side of the overlap ratio, run only where the fast runner has the overlap in effect.
RUNNERS = (
    ("eager", False, False, False),
    ("fast", True, False, False),
    ("efficient", True, True, False),
)
COMPILED = ("compiled", True, False, True)
SERIAL = ("fast-serial", True, False, False)
# The fast step with the training loop's feeding in front of it (densenet/feed.py: index the
# device-held uint8 set, augment), the other side of "is the augmentation visible in the step
# time". It still trains on the shared batches, so that both sides compute the same thing.
FED = ("fast-fed", True, False, False)


def setup(args: argparse.Namespace, malloc: bool = True) -> Tuple[torch.device, Dict[str, Any]]:
    """Threads, device, numerics flags and (unless `malloc` is False) --cpu-malloc, as train
    sets them. The full bench applies --cpu-malloc only after its memory phases
    (bench_steps): a heap grown under `reuse` would keep the phases' freed blocks resident and
    inflate their peaks (bc40 normal runner: 715 MB against 516 MB, measured)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    flags = numerics.configure(args.cudnn, args.tf32, args.deterministic, args.seed)
    flags["applicability"] = numerics.applicability(device)
    if malloc:
        flags["cpu_malloc"] = hostmem.configure(args.cpu_malloc, device)
    return device, flags


def load_images(args: argparse.Namespace, n: int) -> Tuple[Any, ...]:
    """(uint8 images, labels, mean, std, identity) for the data and step benchmarks."""
    if args.dataset == "synthetic":
        ds = data.make_synthetic(n, 10)
    else:
        ds = data.load(args.dataset, args.data_dir)
    return ds.x_train[:n], ds.y_train[:n], ds.mean, ds.std, ds.identity


def make_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    mean: Any,
    std: Any,
    device: torch.device,
    batch_size: int,
    count: int,
    seed: int,
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``count`` augmented batches on the device; every runner cycles through the same ones."""
    normalize = Normalizer(mean, std, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    x, y = x.to(device), y.to(device)
    out = []
    for i in range(count):
        idx = torch.arange(i * batch_size, (i + 1) * batch_size, device=device) % x.shape[0]
        out.append((augment(x[idx], normalize, gen), y[idx]))
    return out


class Runner(object):
    """One model + optimizer + step, fed the shared batches in order."""

    def __init__(
        self,
        name,
        model_name,
        fast,
        efficient,
        device,
        args,
        log,
        optimizer=None,
        compiled=False,
        overlap=None,
    ):
        optimizer = optimizer or args.optimizer
        torch.manual_seed(args.seed)  # same initial weights for every runner
        self.name = name
        self.model = build_model(
            model_name, efficient=efficient, canary=args.canary == "noncontig-grad"
        ).to(device)
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), base_lr(optimizer))
        self.acc = Accumulator(device)
        fn = compile_model(self.model) if compiled else self.model
        if overlap is None:
            overlap = overlap_wanted(args.overlap, compiled)
        self.step, self.why = make_step(
            fn, self.optimizer, self.acc, device, fast, optimizer, log=log, overlap=overlap
        )
        self.fed = None
        self.done = 0

    def __call__(self, batches):
        if self.fed is not None:
            # One batch of the training loop's work, timed with the step. The step then takes
            # the shared batch as the others do, so the two sides differ by the feeding alone
            # and stay comparable bit for bit (a step on other images would also time them).
            next(self.fed)
        x, y = batches[self.done % len(batches)]
        self.step(x, y)
        self.done += 1

    def feed(self, images, normalize, bs, seed, order):
        """Make a batch with the training loop's code (feed.py) before every step: epoch after
        epoch of `images` (uint8 on the device, whole batches: the fed runner's epochs match
        a training run's, but for the partial batch)."""
        x, y = images
        gen = torch.Generator(device=x.device)
        gen.manual_seed(seed)

        def batches():
            while True:
                for b in epoch_batches(x, y, bs, normalize, gen, True, order):
                    yield b

        self.fed = batches()
        return self

    def record(self):
        return {
            "mode": self.step.mode,
            "why_not_graph": self.why,
            "fallback": getattr(self.step, "fallback_reason", None),
            "weight_grad_stream": self.step.overlap,
        }


def agreement(a: "Runner", b: "Runner") -> Dict[str, Any]:
    """How far two runners that took the same steps on the same batches ended up apart."""
    pa, pb = a.model.state_dict(), b.model.state_dict()
    diff = max(float((pa[k].double() - pb[k].double()).abs().max()) for k in pa)
    return {
        "steps": [a.done, b.done],
        "max_abs_state_diff": diff,
        "loss_sum": [float(a.acc.loss_sum), float(b.acc.loss_sum)],
        "bitwise_equal": all(torch.equal(pa[k], pb[k]) for k in pa),
    }


def profile_step(
    runner: "Runner",
    batches: List[Tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    top: int = 12,
) -> Dict[str, Any]:
    """Top kernels (CUDA) or ops (CPU) of one step of `runner` by self time. cuDNN's algorithm
    choice has no torch API; the kernel names (implicit_gemm, winograd, fft, tf32...) show it."""
    acts = profiler_activities(device)
    if acts is None:
        return {"reason": "torch.profiler is not available in this torch"}
    with torch.profiler.profile(activities=acts) as prof:
        runner(batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return {
        "what": "one step of the %s runner, by self %s time"
        % (runner.name, "device" if device.type == "cuda" else "CPU"),
        "top": profile_rows(prof, device)[:top],
    }


def bench_steps(
    args: argparse.Namespace,
    device: torch.device,
    batches: List[Tuple[torch.Tensor, torch.Tensor]],
    log: Callable[[str], None],
    done: Optional[Dict[str, Any]] = None,
    feed: Optional[Tuple[Any, Normalizer]] = None,
) -> Dict[str, Any]:
    """Memory per runner (while it is built and warmed up), then interleaved timing rounds.
    `done` (a dict) gets the runners' setup times and memory as each runner is built; `feed`
    ((images, labels) on the device, normalizer), where given, feeds the fast-fed runner."""
    warmup = args.warmup or (6 if device.type == "cuda" else 2)
    probe = PeakMemory(device)
    probe.start()  # on CPU this also sets up the allocator for the measurements
    # A throwaway step pays first-use costs (cuDNN autotuning, kernel caches) outside every
    # runner's memory measurement.
    Runner("primer", args.model, False, False, device, args, log)(batches)
    runners, memory, setup_s = [], {}, {}
    if done is not None:  # the same dicts, filled below: a stopped bench keeps what it built
        done["runners_built"] = {"setup_s": setup_s, "memory_mb": memory}
    extra = []
    if args.compile == "on" and compile_support(device) is None:
        extra.append(COMPILED)
    if args.overlap == "on":
        extra.append(SERIAL)
    if feed is not None:
        extra.append(FED)
    for name, fast, efficient, compiled in RUNNERS + tuple(extra):
        # The serial runner only where the fast runner has the overlap in effect (not where
        # this device should allow it: torch < 2.0 has the graph step but not the overlap).
        if name == SERIAL[0] and not next(r for r in runners if r.name == "fast").step.overlap:
            continue
        probe.start()
        t0 = time.perf_counter()
        overlap = False if name == SERIAL[0] else None  # None: as --overlap says
        r = Runner(
            name, args.model, fast, efficient, device, args, log, compiled=compiled, overlap=overlap
        )
        if name == FED[0]:
            r.feed(feed[0], feed[1], args.batch_size, args.seed, args.augment_order)
        for _ in range(warmup):
            r(batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        setup_s[name] = time.perf_counter() - t0  # the compiled runner compiles in here
        memory[name] = probe.stop()
        runners.append(r)
    cpu_malloc = probe.done(args.cpu_malloc)  # the timing rounds run under --cpu-malloc
    per_round = int(math.ceil(args.steps / float(args.rounds)))
    times = {r.name: [] for r in runners}
    walls = {r.name: 0.0 for r in runners}
    for k in range(args.rounds):
        for r in runners[k % len(runners) :] + runners[: k % len(runners)]:
            ms, wall = time_calls(lambda i, r=r: r(batches), per_round, device)
            times[r.name] += ms
            walls[r.name] += wall
    by = {r.name: r for r in runners}
    out = {
        "step_ms": {name: summarize(v)["median"] for name, v in times.items()},
        "step_stats": {name: summarize(v) for name, v in times.items()},
        "wall_ms_per_step": {name: walls[name] / len(times[name]) for name in times},
        "modes": {r.name: r.record() for r in runners},
        "memory_mb": memory,
        "memory_method": probe.method if probe.reason is None else probe.reason,
        "setup_s": setup_s,
        "agreement": {
            "fast_vs_eager": agreement(by["eager"], by["fast"]),
            "efficient_vs_fast": agreement(by["fast"], by["efficient"]),
        },
        "warmup": warmup,
        "steps_per_round": per_round,
        "cpu_malloc": cpu_malloc,
    }
    if "compiled" in by:
        out["agreement"]["compiled_vs_eager"] = agreement(by["eager"], by["compiled"])
    if FED[0] in by:
        out["agreement"]["fed_vs_fast"] = agreement(by["fast"], by[FED[0]])
    if SERIAL[0] in by:
        out["agreement"]["fast_vs_serial"] = agreement(by[SERIAL[0]], by["fast"])
    out["profile"] = (
        profile_step(by["eager"], batches, device)
        if args.profile == "on"
        else {"reason": "--profile off"}
    )
    if "compiled" in by and args.profile == "on":
        # What is left after fusion (on CUDA, the kernels of one replay of its graph).
        out["profile_compiled"] = profile_step(by["compiled"], batches, device)
    return out
