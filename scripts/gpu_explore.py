"""Leads for the next speed-up, measured on a lent GPU; nothing here is used by the trainer.

The issue's target (<= 10 ms/step fp32 for densenet-bc100-k12 at batch 64) is far below the
CUDA-graph anchor (29.8 ms on an H200). Before building anything, measure in one process the
levers that keep the precision: memory format (channels_last lets cuDNN pick NHWC kernels)
under fp32 and TF32, each as the same CUDA-graph step the trainer uses (densenet/steps.py),
median of device-event step times after warmup and capture. Prints one JSON line per setting
and writes them all to $OUT/explore.json.

    python3 scripts/gpu_explore.py [--steps 30] [--device cuda]

On a CPU (--device cpu) the same code runs with the eager no-sync step: a dry run only.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from densenet import numerics  # noqa: E402
from densenet.models import build_model  # noqa: E402
from densenet.steps import Accumulator, make_step  # noqa: E402
from densenet.timing import summarize, time_calls  # noqa: E402
from densenet.train import make_optimizer  # noqa: E402

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
SETTINGS = [  # (tf32, memory format, torch.compile)
    ("off", "contiguous", False),
    ("off", "channels_last", False),
    ("on", "contiguous", False),
    ("on", "channels_last", False),
]
# --compile: inductor fuses the BN-ReLU and cat copies into Triton kernels and leaves the
# convolutions to cuDNN; fp32 arithmetic, reductions possibly reordered. Against the plain
# graph step in the same process.
COMPILE_SETTINGS = [("off", "contiguous", False), ("off", "contiguous", True)]


def measure(model_name, batch, tf32, fmt, compiled, steps, device):
    numerics.configure(cudnn="on", tf32=tf32, seed=0)
    memory_format = FORMATS[fmt]
    model = build_model(model_name).to(device).to(memory_format=memory_format)
    if compiled:
        model = torch.compile(model)  # compiles in the first warmup step below
    optimizer = make_optimizer("sgd", model.parameters(), 0.1)
    step, why = make_step(model, optimizer, Accumulator(device), device, True, "sgd")
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
    setup_s = time.perf_counter() - t0
    ms, _ = time_calls(lambda i: step(x, y), steps, device)
    return {
        "model": model_name,
        "batch": batch,
        "tf32": tf32,
        "memory_format": fmt,
        "compiled": compiled,
        "mode": step.mode,
        "fallback": getattr(step, "fallback_reason", None) or why,
        "step_ms": summarize(ms),
        "setup_s": setup_s,
        "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="densenet-bc100-k12")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile vs plain, fp32")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    out = {"torch": torch.__version__, "results": []}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cudnn"] = torch.backends.cudnn.version()
    dest = os.path.join(os.environ.get("OUT") or ".", "explore.json")
    for tf32, fmt, compiled in COMPILE_SETTINGS if args.compile else SETTINGS:
        try:
            res = measure(args.model, args.batch_size, tf32, fmt, compiled, args.steps, device)
        except Exception as exc:  # one setting failing must not lose the others
            why = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            res = {"tf32": tf32, "memory_format": fmt, "compiled": compiled, "error": why}
        out["results"].append(res)
        print(json.dumps(res), flush=True)
        with open(dest, "w") as f:  # after each setting: a timeout keeps what was measured
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
