"""Leads for the next speed-up, measured on a GPU; nothing here is used by the trainer.

The target (<= 10 ms/step fp32 for densenet-bc100-k12 at batch 64) is below what the
compiled CUDA-graph step reached (16.6 ms on an H200, ~12 ms of it cuDNN convolutions). Each
setting runs the trainer's CUDA-graph step (densenet/steps.py) on one fixed batch and reports
the median of device-event step times after warmup and capture, the setup time, the peak
memory and the top kernels of one profiled step (which cuDNN engines ran). A setting is
"fp32" or "tf32" with any of these suffixes:

    +cl        channels_last tensors (cuDNN may pick NHWC kernels)
    +compile   torch.compile (inductor fuses BN/ReLU/cat copies; convolutions stay cuDNN)
    +overlap   convolution weight gradients on a side stream (densenet/overlap.py); with
               +compile, each convolution is a graph break and inductor compiles the layers
               between them (one graph per layer width); the trainer does not combine them

--limit sets torch.backends.cudnn.benchmark_limit, how many cuDNN engine configs autotuning
times per convolution (torch's default 10; 0 = all). cuDNN caches the chosen engine per
convolution shape for the whole process whatever the limit, so compare limits in separate
processes (scripts/gpu_algos.sh does). Writes $OUT/explore[-TAG].json after every setting,
so a timeout keeps what was measured, and prints one JSON line per setting.

    python3 scripts/gpu_explore.py [--settings fp32,tf32+cl] [--limit N] [--tag T]

On a CPU (--device cpu) the same code runs with the eager no-sync step: a dry run only.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from densenet import compiled, numerics  # noqa: E402
from densenet.bench.runners import profile_step  # noqa: E402
from densenet.bench.timing import summarize, time_calls  # noqa: E402
from densenet.models import build_model  # noqa: E402
from densenet.recipe import make_optimizer  # noqa: E402
from densenet.steps import Accumulator, make_step  # noqa: E402

DEFAULT_SETTINGS = "fp32,fp32+cl,tf32,tf32+cl"
SUFFIXES = ("cl", "compile", "overlap")


def parse_setting(text):
    """'tf32+cl+overlap' -> {"tf32": "on", "cl": True, "compile": False, "overlap": False}."""
    base, *extras = text.strip().split("+")
    bad = [e for e in extras if e not in SUFFIXES]
    if base not in ("fp32", "tf32") or bad or len(set(extras)) != len(extras):
        raise ValueError(
            "setting %r: expected fp32 or tf32, then any of +%s" % (text, ", +".join(SUFFIXES))
        )
    out = {"tf32": "on" if base == "tf32" else "off"}
    out.update({s: s in extras for s in SUFFIXES})
    return out


class _Step(object):
    """The runner profile_step expects: a name and a call on a list of batches."""

    def __init__(self, name, step):
        self.name, self.step = name, step

    def __call__(self, batches):
        for x, y in batches:
            self.step(x, y)


def measure(model_name, batch, setting, steps, device, limit):
    s = parse_setting(setting)
    numerics.configure(cudnn="on", tf32=s["tf32"], seed=0)
    if limit is not None:
        torch.backends.cudnn.benchmark_limit = limit
    memory_format = torch.channels_last if s["cl"] else torch.contiguous_format
    model = build_model(model_name).to(device).to(memory_format=memory_format)
    optimizer = make_optimizer("sgd", model.parameters(), 0.1)
    net = compiled.compile_model(model) if s["compile"] else model  # compiles in warmup
    acc = Accumulator(device)
    step, why = make_step(net, optimizer, acc, device, True, "sgd", overlap=s["overlap"])
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device, generator=gen)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,), device=device, generator=gen)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(5):  # 3 eager warmup steps, the capture, one replay
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_s = time.perf_counter() - t0
    ms, _ = time_calls(lambda i: step(x, y), steps, device)
    return {
        "setting": setting,
        "model": model_name,
        "batch": batch,
        "benchmark_limit": getattr(torch.backends.cudnn, "benchmark_limit", None),
        "mode": step.mode,
        "weight_grad_stream": step.overlap,
        "fallback": getattr(step, "fallback_reason", None) or why,
        "step_ms": summarize(ms),
        "setup_s": setup_s,
        "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "profile": profile_step(_Step(setting, step), [(x, y)], device, top=8),
        "loss_sum": float(step.acc.loss_sum.item()),  # same batch, same steps: settings agree?
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="densenet-bc100-k12")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="cuda")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated, see above")
    p.add_argument("--limit", type=int, default=None, help="cudnn.benchmark_limit (0 = all)")
    p.add_argument("--tag", default="", help="writes explore-TAG.json")
    args = p.parse_args(argv)
    settings = args.settings.split(",")
    for s in settings:
        try:
            parse_setting(s)
        except ValueError as exc:
            p.error(str(exc))
    device = torch.device(args.device)
    out = {"torch": torch.__version__, "limit": args.limit, "results": []}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cudnn"] = torch.backends.cudnn.version()
    name = "explore-%s.json" % args.tag if args.tag else "explore.json"
    dest = os.path.join(os.environ.get("OUT") or ".", name)
    for setting in settings:
        try:
            res = measure(args.model, args.batch_size, setting, args.steps, device, args.limit)
        except Exception as exc:  # one setting failing must not lose the others
            why = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            res = {"setting": setting, "error": why}
        out["results"].append(res)
        brief = {k: v for k, v in res.items() if k != "profile"}
        print(json.dumps(brief), flush=True)
        for row in res.get("profile", {}).get("top", [])[:6]:  # which engines ran
            print("    %7.3f ms  x%-4d %s" % (row["self_ms"], row["count"], row["name"][:100]))
        with open(dest + ".part", "w") as f:  # after each setting: a timeout keeps the rest
            json.dump(out, f, indent=1)
        os.replace(dest + ".part", dest)


if __name__ == "__main__":
    main()
