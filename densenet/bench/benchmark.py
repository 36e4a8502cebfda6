"""`python -m densenet bench`: both sides of every speed ratio, measured in one run.

Sections follow the order of execution: numerics flags, data (a uint8 set held on the device),
step runners (eager reference, fast step, fast step in efficient mode, fast step with the
training loop's feeding in front of it; same initial weights, same batches in the same order),
memory per runner while it warms up, interleaved timing rounds, the fast-vs-eager agreement
check, one profiled step, the data pipeline against the torchvision baseline, then JSON
(atomic) and a table (table.py). `--probe` instead writes a short timing probe per model
for cost prediction (probe.py). The runners and the timing rounds are runners.py.

A bench stopped by SIGTERM or SIGINT (a time limit's, say: a cold `--compile on` bench takes
minutes) writes what it had finished to OUT.partial.json, marked `"partial"`, and exits 128+signal;
OUT itself is written only by a finished run, so nothing that reads it sees half a bench.

Timing rules (airbench style): device events on CUDA, perf_counter on CPU; the runners take
turns in rounds so that load from other processes hits every side alike; each figure is the
median step after warmup; nothing is evaluated inside the timed region.
"""

import argparse
import os
import signal
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch

from .. import atomic, data, envinfo
from ..augment import Normalizer
from ..compiled import describe as describe_precision
from ..compiled import grad_precision
from ..compiled import support as compile_support
from ..gradcheck.batch import make_batch as make_grad_batch
from ..models import build_model
from ..outcome import EXIT_FAILED, EXIT_SKIPPED, Skip, note
from .data_pipeline import available_cores, bench_data
from .probe import run_probe
from .runners import FED, SERIAL, bench_steps, load_images, make_batches, setup
from .table import table

__all__ = ["run_bench", "run_stoppable", "out_path", "partial_path", "main"]


def overlap_section(args: argparse.Namespace, steps: Mapping[str, Any]) -> Dict[str, Any]:
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


def feed_section(args: argparse.Namespace, steps: Mapping[str, Any], images: int) -> Dict[str, Any]:
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


def bench_compile(
    args: argparse.Namespace, device: torch.device, steps: Mapping[str, Any]
) -> Dict[str, Any]:
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


def run_bench(
    args: argparse.Namespace, log: Callable[[str], None], done: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
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


def out_path(args: argparse.Namespace) -> str:
    """--out FILE, or --out DIR (as the workflow's runner passes a job directory): DIR/probe.json
    with --probe, else DIR/bench.json."""
    if os.path.isdir(args.out):
        return os.path.join(args.out, "probe.json" if args.probe else "bench.json")
    return args.out


def partial_path(path: str) -> str:
    """Where a stopped bench leaves what it finished: bench.json -> bench.partial.json."""
    root, ext = os.path.splitext(path)
    return root + ".partial" + (ext or ".json")


class Stopped(BaseException):
    """SIGTERM arrived (BaseException, as KeyboardInterrupt: no `except Exception` inside
    torch or the bench swallows it on the way out)."""


def _raise_stopped(signum, frame):
    raise Stopped()


def run_stoppable(
    args: argparse.Namespace, log: Callable[[str], None], path: str
) -> Tuple[Optional[Dict[str, Any]], int]:
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


def check_writable(path: str) -> None:
    """Create --out's folder and write a scratch file there: minutes of timing must not end
    in an error about where the result goes."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError("--out %s: cannot write there (%s)" % (path, exc.strerror or exc)) from None


def main(args: argparse.Namespace) -> int:
    """Entry point of `python -m densenet bench`: 0 done, 1 error (one line), 4 skipped,
    128 + signal when stopped."""
    path = out_path(args)
    try:
        check_writable(path)
        if args.probe:
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
