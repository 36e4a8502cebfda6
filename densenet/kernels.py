"""Which convolution kernels a training step runs: the record of cuDNN's algorithm choice.

cuDNN's choice (autotuned under benchmark=True, fixed under --deterministic on) has no torch
API, but the kernel names tell the algorithm family: implicit GEMM, Winograd, FFT, the legacy
`wgrad_alg0_engine`, TF32 (`..._tf32`) or FP32-FMA (`..._ffma`) variants. So a cell profiles
one forward+backward of a copy of its model at the training batch size, after training, and
summary.json keeps the convolution and GEMM kernels by device time. cuDNN caches the autotuned
choice per shape within the process, so the copy runs the algorithms the training step ran.
On the CPU the same record lists the convolution ops instead (mkldnn/oneDNN or the slow
reference path), by CPU time.
"""

import copy
import os
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

# Kernel-name fragments of convolution and GEMM kernels (cuDNN, cuBLAS, CUTLASS, inductor).
CONV_WORDS = (
    "conv",
    "gemm",
    "wgrad",
    "dgrad",
    "fprop",
    "winograd",
    "fft",
    "xmma",
    "cutlass",
    "im2col",
    "col2im",
)
# Inductor's fused pointwise / reduction / persistent-reduction kernels: never convolutions.
NOT_CONV_TRITON = ("triton_poi_", "triton_red_", "triton_per_")
# CPU profile rows of the ops that only dispatch to the one doing the work.
CPU_DISPATCH = ("aten::conv2d", "aten::convolution", "aten::_convolution")


def is_conv_kernel(name: str, device: torch.device) -> bool:
    """A convolution/GEMM kernel (CUDA) or op (CPU) by its name. On CUDA the aten ops (CPU-side
    dispatch rows) and inductor's fused elementwise and reduction kernels (triton_poi_/red_/
    per_, named after the ops they fuse, "convolution_backward" included) are not; inductor's
    GEMM/convolution templates (triton_tem_) are. On the CPU only the aten ops that compute
    (aten::mkldnn_convolution, aten::convolution_backward, ...), not the dispatchers in front
    of them nor autograd's node rows."""
    if device.type == "cuda":
        if name.startswith(("aten::",) + NOT_CONV_TRITON):
            return False
    elif not name.startswith("aten::") or name in CPU_DISPATCH:
        return False
    return any(w in name.lower() for w in CONV_WORDS)


def profile_rows(prof: Any, device: torch.device) -> List[Dict[str, Any]]:
    """[{"name", "count", "self_ms"}] of a finished profile, by self device time on CUDA
    (kernels) or self CPU time on the CPU (ops), largest first, zero-time rows dropped."""
    rows = []
    for e in prof.key_averages():
        if device.type == "cuda":
            t = getattr(e, "self_device_time_total", None)
            if t is None:
                t = getattr(e, "self_cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        rows.append({"name": e.key, "count": e.count, "self_ms": t / 1000.0})
    return [r for r in sorted(rows, key=lambda r: -r["self_ms"]) if r["self_ms"] > 0]


def profiler_activities(device: torch.device) -> Optional[List[Any]]:
    """The torch.profiler activities for this device, or None where torch has no profiler."""
    prof_mod = getattr(torch, "profiler", None)
    if prof_mod is None or not hasattr(prof_mod, "profile"):
        return None
    acts = [prof_mod.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(prof_mod.ProfilerActivity.CUDA)
    return acts


def conv_kernels(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    wrap: Optional[Callable] = None,
) -> Dict[str, Any]:
    """The convolution kernels of one forward+backward of a deep copy of `model` on (x, y).

    wrap: applied to the copy before it runs (compiled.compile_model for --compile on, whose
    generated code may pick other memory layouts for the convolutions). One unprofiled pass
    first, so lazy setup and a compile stay out of the profile. The training state (weights,
    BN buffers, grads, RNG) is not touched. Returns {"what", "kernels"} or {"reason"}."""
    acts = profiler_activities(device)
    if acts is None:
        return {"reason": "torch.profiler is not available in torch %s" % torch.__version__}
    if device.type == "cpu":
        # A CUDA build of torch on a machine without a GPU otherwise logs an ERROR line from
        # the profiler's device query into every CPU cell's log.
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    twin = copy.deepcopy(model)
    twin.train()
    fn = wrap(twin) if wrap else twin
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state() if device.type == "cuda" else None
    try:
        F.cross_entropy(fn(x), y).backward()  # warm: lazy init, compile
        with torch.profiler.profile(activities=acts) as prof:
            F.cross_entropy(fn(x), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
    finally:  # dropout in the copy must not shift the training run's random stream
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng)
    rows = [r for r in profile_rows(prof, device) if is_conv_kernel(r["name"], device)]
    return {
        "what": "convolution/GEMM %s of one forward+backward at batch %d, by self %s time"
        % (
            "kernels" if device.type == "cuda" else "ops",
            y.shape[0],
            "device" if device.type == "cuda" else "CPU",
        ),
        "kernels": rows,
    }
