"""`python -m densenet bench`: both sides of every speed ratio, measured in one run.

Sections follow the order of execution: numerics flags, data (a uint8 set held on the device),
step runners (eager reference, fast step, fast step in efficient mode, fast step with the
training loop's feeding in front of it; same initial weights, same batches in the same order),
memory per runner while it warms up, interleaved timing rounds, the fast-vs-eager agreement
check, one profiled step, the data pipeline against the torchvision baseline, then JSON
(atomic) and a table (densenet/bench_table.py). `--probe` instead writes a short timing
probe per model for cost prediction (densenet/probe.py).

A bench stopped by SIGTERM or SIGINT (a lease's timeout, say: a cold `--compile on` bench takes
minutes) writes what it had finished to OUT.partial.json, marked `"partial"`, and exits 128+signal;
OUT itself is written only by a finished run, so nothing that reads it sees half a bench.

Timing rules (airbench style): device events on CUDA, perf_counter on CPU; the runners take
turns in rounds so that load from other processes hits every side alike; each figure is the
median step after warmup; nothing is evaluated inside the timed region.
"""

import math
import os
import signal
import tempfile
import threading
import time

import torch

from . import atomic, data, envinfo, hostmem, numerics
from .augment import Normalizer, augment
from .bench_table import table
from .compiled import compile_model, grad_precision
from .compiled import describe as describe_precision
from .compiled import support as compile_support
from .databench import available_cores, bench_data
from .feed import epoch_batches
from .gradcheck import make_batch as make_grad_batch
from .kernels import profile_rows, profiler_activities
from .models import build_model
from .overlap import wanted as overlap_wanted
from .steps import Accumulator, make_step
from .timing import PeakMemory, summarize, time_calls
from .train import OPTIMIZERS, make_optimizer, resolve_device

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


def add_arguments(p):
    """The bench options (numerics flags are added by the CLI)."""
    from .cli import non_negative_int, out_file, positive_int
    from .models import MODEL_NAMES

    p.add_argument("--out", required=True, type=out_file, help="JSON file (or folder) to write")
    p.add_argument("--model", default="densenet-bc100-k12", choices=MODEL_NAMES)
    p.add_argument(
        "--models", default=None, help="--probe: comma-separated model names (default: --model)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--steps", type=positive_int, default=20, help="timed steps per runner (after warmup)"
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=4,
        help="the timed steps are split into this many interleaved rounds",
    )
    p.add_argument(
        "--warmup",
        type=positive_int,
        default=None,
        help="untimed steps per runner (default: 2 on CPU, 6 on CUDA, where the "
        "CUDA-graph step needs 3 eager steps and a capture first)",
    )
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument(
        "--optimizers",
        default=None,
        help="--probe: comma-separated optimizers (default: --optimizer)",
    )
    p.add_argument(
        "--dataset",
        choices=data.DATASETS,
        default="synthetic",
        help="images for the data pipeline and the step batches",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--data-images", type=positive_int, default=10000, help="images per data-pipeline round"
    )
    p.add_argument("--data-rounds", type=positive_int, default=3)
    p.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="baseline DataLoader workers (default: the cores available)",
    )
    p.add_argument("--augment-order", choices=("official", "bamos"), default="official")
    p.add_argument(
        "--profile",
        choices=("on", "off"),
        default="on",
        help="profile one eager step and record the top kernels/ops",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="write a cost probe (per-model step, eval, checkpoint times) instead",
    )
    p.add_argument(
        "--fast",
        choices=("auto", "on", "off"),
        default="auto",
        help="--probe: the step the cells will use (auto: on for CUDA)",
    )
    p.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=None,
        help="--probe: eval batch (default as train: 500 on CUDA, --batch-size on CPU)",
    )
    p.add_argument("--env-id", default=None, help="--probe: the manifest env id, recorded")
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=None,
        help="torch intra-op threads (default, or 0: torch's choice); on a shared, "
        "oversubscribed CPU one thread can beat several by far",
    )
    p.add_argument(
        "--compile",
        choices=("on", "off"),
        default="off",
        help="also time the fast step of a torch.compile'd model, and check its gradients "
        "against float64 (densenet/compiled.py)",
    )
    p.add_argument(
        "--precision",
        choices=("on", "off"),
        default="on",
        help="with --compile on: the gradient check against float64 (two more compiles, "
        "minutes on a cold cache; it does not depend on TF32, which float64 never uses)",
    )
    p.add_argument(
        "--feed",
        choices=("on", "off"),
        default="on",
        help="also time the fast step with the training loop's feeding (index + augment, "
        "densenet/feed.py) in front of it: one more runner (its memory too)",
    )
    from .cli import add_cpu_malloc, add_overlap

    add_overlap(p)
    add_cpu_malloc(p)
    p.add_argument("--image-ref", default=None)


def load_images(args, n):
    """(uint8 images, labels, mean, std, identity) for the data and step benchmarks."""
    if args.dataset == "synthetic":
        ds = data.make_synthetic(n, 10)
    else:
        ds = data.load(args.dataset, args.data_dir)
    return ds.x_train[:n], ds.y_train[:n], ds.mean, ds.std, ds.identity


def make_batches(x, y, mean, std, device, batch_size, count, seed):
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
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), OPTIMIZERS[optimizer])
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


def agreement(a, b):
    """How far two runners that took the same steps on the same batches ended up apart."""
    pa, pb = a.model.state_dict(), b.model.state_dict()
    diff = max(float((pa[k].double() - pb[k].double()).abs().max()) for k in pa)
    return {
        "steps": [a.done, b.done],
        "max_abs_state_diff": diff,
        "loss_sum": [float(a.acc.loss_sum), float(b.acc.loss_sum)],
        "bitwise_equal": all(torch.equal(pa[k], pb[k]) for k in pa),
    }


def profile_step(runner, batches, device, top=12):
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


def bench_steps(args, device, batches, log, done=None, feed=None):
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


def overlap_section(args, steps):
    """--overlap: the fast step with the weight-gradient stream against the one without, same
    process, same rounds (densenet/overlap.py); a reason where it was not in effect."""
    if SERIAL[0] not in steps["step_ms"]:
        if args.overlap == "off":
            return {"reason": "--overlap off"}
        if steps["modes"]["fast"]["mode"] != "cuda-graph":
            return {"reason": "no CUDA-graph step here"}
        # densenet/overlap.py install() routed nothing: torch < 2.0 (no optimizer step
        # pre-hooks), or no plain Conv2d (the canary's convolutions keep their own backward).
        return {"reason": "not in effect (torch %s; canary %s)" % (torch.__version__, args.canary)}
    return {
        "step_ms": {"serial": steps["step_ms"][SERIAL[0]], "overlap": steps["step_ms"]["fast"]},
        "agreement": steps["agreement"]["fast_vs_serial"],
    }


def feed_section(args, steps, images):
    """The fast step with the training loop's feeding (index + augment, feed.py) in front of
    it against the same step alone, same batches, same process, same rounds: what feeding
    adds to a training step."""
    if FED[0] not in steps["step_ms"]:
        return {"reason": "--feed off" if args.feed == "off" else "--data-images < --batch-size"}
    prepared, fed = steps["step_ms"]["fast"], steps["step_ms"][FED[0]]
    return {
        "step_ms": {"prepared": prepared, "fed": fed},
        "visible_pct": 100.0 * (fed / prepared - 1.0),
        "images": images,
        "agreement": steps["agreement"]["fed_vs_fast"],
    }


def bench_compile(args, device, steps):
    """--compile on: the compiled fast step against the plain one (same process, same rounds)
    and its gradients against float64 (densenet/compiled.py)."""
    why = compile_support(device)
    if why:
        return {"reason": why}
    if args.precision == "on":
        x, y = make_grad_batch(args.batch_size, device)  # fixed real-looking images
        torch.manual_seed(args.seed)
        model = build_model(args.model).to(device)
        precision = grad_precision(model, x, y)
        summary = describe_precision(precision)
    else:
        precision = {"reason": "--precision off"}
        summary = "gradients against float64: not checked (--precision off)"
    return {
        "step_ms": {"fast": steps["step_ms"]["fast"], "compiled": steps["step_ms"]["compiled"]},
        "setup_s": steps["setup_s"]["compiled"],
        "peak_mem_mb": steps["memory_mb"]["compiled"],
        "mode": steps["modes"]["compiled"],
        "profile": steps.get("profile_compiled", {"reason": "--profile off"}),
        "agreement": steps["agreement"]["compiled_vs_eager"],
        "grad_precision": precision,
        "precision_summary": summary,
    }


def setup(args, malloc=True):
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


def run_bench(args, log, done=None):
    """The whole bench; `done` (a dict) collects each finished section as it finishes, for
    main() to write if a signal stops the run."""
    done = {} if done is None else done
    done["config"] = config = {k: v for k, v in vars(args).items() if k not in ("command",)}
    device, flags = setup(args, malloc=False)  # --cpu-malloc: after the memory phases
    config.update(device=device.type, cores=available_cores())
    done.update(flags=flags, environ=envinfo.environ(args.image_ref))
    x, y, mean, std, identity = load_images(args, args.data_images)
    config["dataset_identity"] = identity
    xd, yd = x.to(device), y.to(device)  # one device copy for the step batches and the feed
    batches = make_batches(xd, yd, mean, std, device, args.batch_size, 4, args.seed)
    whole = (x.shape[0] // args.batch_size) * args.batch_size  # images in whole batches
    feed = None
    if whole and args.feed == "on":
        feed = ((xd[:whole], yd[:whole]), Normalizer(mean, std, device))
    steps = bench_steps(args, device, batches, log, done, feed=feed)
    flags["cpu_malloc"] = steps["cpu_malloc"]
    done.update(
        steps=steps, overlap=overlap_section(args, steps), feed=feed_section(args, steps, whole)
    )
    log("bench: step timing done")
    compiled = bench_compile(args, device, steps) if args.compile == "on" else None
    if compiled is not None:
        done["compile"] = compiled
        log("bench: --compile section done")
    pipe = bench_data(
        x,
        y,
        mean,
        std,
        device,
        args.batch_size,
        args.data_rounds,
        order=args.augment_order,
        seed=args.seed,
        workers=args.num_workers,
    )
    return {
        "step_ms": {"eager": steps["step_ms"]["eager"], "fast": steps["step_ms"]["fast"]},
        "data_img_s": {"ours": pipe["ours"]["img_s"], "torchvision": pipe["torchvision"]["img_s"]},
        "peak_mem_mb": steps["memory_mb"]["fast"],
        "efficient": {
            "step_ms": {
                "normal": steps["step_ms"]["fast"],
                "efficient": steps["step_ms"]["efficient"],
            },
            "peak_mem_mb": {
                "normal": steps["memory_mb"]["fast"],
                "efficient": steps["memory_mb"]["efficient"],
            },
        },
        "compile": compiled,
        "overlap": done["overlap"],
        "feed": done["feed"],
        "steps": steps,
        "data": pipe,
        "flags": flags,
        "environ": done["environ"],
        "config": config,
    }


def out_path(args):
    """--out FILE, or --out DIR (as the workflow's runner passes a job directory): DIR/probe.json
    with --probe, else DIR/bench.json."""
    if os.path.isdir(args.out):
        return os.path.join(args.out, "probe.json" if args.probe else "bench.json")
    return args.out


def partial_path(path):
    """Where a stopped bench leaves what it finished: bench.json -> bench.partial.json."""
    root, ext = os.path.splitext(path)
    return root + ".partial" + (ext or ".json")


class Stopped(BaseException):
    """SIGTERM arrived (BaseException, as KeyboardInterrupt: no `except Exception` inside
    torch or the bench swallows it on the way out)."""


def _raise_stopped(signum, frame):
    raise Stopped()


def run_stoppable(args, log, path):
    """run_bench; on SIGTERM/SIGINT write the finished sections to partial_path(path) and
    return (None, 128 + signal)."""
    done, t0 = {}, time.time()
    # Handlers can only be set from the main thread; elsewhere the caller owns signals. An
    # ignored SIGTERM (nohup-like starts) stays ignored.
    own = threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) not in (signal.SIG_IGN, None)
    old = signal.signal(signal.SIGTERM, _raise_stopped) if own else None
    try:
        return run_bench(args, log, done), 0
    except (Stopped, KeyboardInterrupt) as exc:
        if own:  # a second SIGTERM must not cut the partial file's write short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signum = signal.SIGTERM if isinstance(exc, Stopped) else signal.SIGINT
        stopped = {
            "stopped_by": signal.Signals(signum).name,
            "after_s": round(time.time() - t0, 1),
            "finished": sorted(k for k in done if k not in ("runners_built", "config")),
            "note": "not a finished bench: only the sections named in `finished` are whole",
        }
        atomic.write_json(partial_path(path), dict(done, partial=stopped))
        log(
            "bench: stopped by %s after %.0f s; finished %s written to %s"
            % (stopped["stopped_by"], stopped["after_s"], stopped["finished"], partial_path(path))
        )
        return None, 128 + signum
    finally:
        if own:
            signal.signal(signal.SIGTERM, old)


def check_writable(path):
    """Create --out's folder and write a scratch file there: minutes of timing must not end
    in an error about where the result goes."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError("--out %s: cannot write there (%s)" % (path, exc.strerror or exc)) from None


def main(args):
    """Entry point of `python -m densenet bench`: 0 done, 1 error (one line), 4 skipped,
    128 + signal when stopped."""
    from .train import EXIT_FAILED, EXIT_SKIPPED, Skip, note

    path = out_path(args)
    try:
        check_writable(path)
        if args.probe:
            from .probe import run_probe

            res = run_probe(args, note)
            text = res["table"]
        else:
            res, rc = run_stoppable(args, note, path)
            if res is None:
                return rc
            text = table(res)
        atomic.write_json(path, res)
    except Skip as exc:
        note("skipped: %s" % exc)
        return EXIT_SKIPPED
    except (data.DataError, OSError) as exc:  # the user's to fix: one line, no traceback
        note("error: %s" % (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        return EXIT_FAILED
    if not args.probe and os.path.exists(partial_path(path)):
        os.unlink(partial_path(path))  # an earlier stopped run's leftovers: this one finished
    print(text)
    return 0
