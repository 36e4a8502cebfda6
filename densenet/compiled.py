"""`--compile on`: the training step's model run through torch.compile (inductor), and a check
that it keeps float32 precision.

Why: on an H200 the CUDA-graph step of DenseNet-BC-100 is limited by GPU kernel time, not by
launches (BENCHMARKS.md). About a third of that time is BatchNorm, ReLU, concatenation copies
and gradient additions, each its own kernel over the growing concatenated input. Inductor
fuses those into generated kernels and leaves the convolutions to cuDNN (as aten calls), so
the convolution algorithms are those of the eager step.

What changes: fused reductions (BN batch statistics, their gradients) sum in another order, so
a compiled step is not bitwise equal to eager, even with --deterministic on. That is why
--compile is off by default and is part of a cell's identity (not resume-neutral), and why
`grad_precision` exists: the same batch and weights through eager and compiled steps, per
conv/linear weight gradient, in float64 (is it the same function and gradient? On the H200:
1.5e-15 median, 2.1e-15 max over 100 layers) and in float32 against float64 (as far from it as
eager?). Measured on the H200: 1.26x per CUDA-graph step, 16.58 vs 20.95 ms (BENCHMARKS.md).
`train` refuses --compile on with --efficient on: on the CPU, dynamo broke the graph at each
checkpointed bottleneck, recompiled it for every input width until its recompile limit (8),
and ran the rest eagerly.

The compiled callable wraps the model and shares its parameters and buffers; evaluation,
checkpoints and state_dict keys use the plain model (no "_orig_mod." prefix, no eval-mode
compile). Shapes are static (dynamic=False): the epoch's partial last batch compiles once more.
"""

import copy
import importlib.util
import shutil
import statistics
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F

from .gradcheck.whole_model import LAYER_TYPES, rel_err


def support(device: torch.device) -> Optional[str]:
    """None if torch.compile can run on this device here, else why not (one line)."""
    if not hasattr(torch, "compile"):
        return "torch %s has no torch.compile (added in 2.0)" % torch.__version__
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs triton, which is not installed"
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "torch.compile on the CPU needs a C++ compiler (g++), none on PATH"
    return None


# Compiled graphs per code object (and in all). One graph serves the whole model unless it is
# split: the overlap's convolutions are graph breaks (overlap.py), and then each dense layer's
# code gets one graph per input width and batch size, ~200 for densenet-bc100-k12 where
# torch's default limit of 8 would run every layer past the 8th eagerly.
RECOMPILE_LIMIT = 1024


def _allow_one_graph_per_layer():
    import torch._dynamo  # loaded lazily by some torch versions

    config = torch._dynamo.config
    for name in (
        "recompile_limit",
        "cache_size_limit",
        "accumulated_recompile_limit",
        "accumulated_cache_size_limit",
    ):  # the names differ across torch versions; some are aliases of others
        if getattr(config, name, RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
            setattr(config, name, RECOMPILE_LIMIT)


def compile_model(model: torch.nn.Module) -> Callable:
    """The compiled callable of `model` (the training step calls it; nothing compiles yet)."""
    _allow_one_graph_per_layer()
    return torch.compile(model, dynamic=False)


def _weight_grads(fn, model, x, y):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(fn(x), y)
    loss.backward()
    grads = {}
    for name, m in model.named_modules():
        if isinstance(m, LAYER_TYPES):
            grads[name] = m.weight.grad.detach().double().cpu()
    return float(loss.detach()), grads


def _spread(a, b):
    errs = [rel_err(a[k], b[k]) for k in a]
    return {"max": max(errs), "median": statistics.median(errs), "layers": len(errs)}


def grad_precision(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Dict[str, Any]:
    """Weight gradients of eager and compiled runs of the same weights on the same batch (BN in
    training mode), compared per conv/linear layer as ||g - g_ref|| / ||g_ref||: max and
    median over the layers.

    - compiled_fp64_vs_eager_fp64: both in float64 (a deep copy). The decisive check that the
      compiled step computes the same function and gradient: reordered sums move float64
      results by ~1e-15, a wrong fused kernel by far more.
    - eager_vs_fp64, compiled_vs_fp64: the float32 runs against eager float64. These are not
      ReLU-aligned as in gradcheck/whole_model.py (its hooks do not survive compilation): a
      pre-activation within float32 rounding of zero that lands on the other side moves every
      layer upstream of it to ~1e-3 (measured on DenseNet-BC-40 at batch 64, eager and
      compiled alike), so read the layers below the last flip, or the float64 pair above."""
    model.train()
    reference = copy.deepcopy(model).double()
    loss32, eager = _weight_grads(model, model, x, y)
    loss_c, comp = _weight_grads(compile_model(model), model, x, y)
    x64 = x.double()
    loss64, ref = _weight_grads(reference, reference, x64, y)
    loss_c64, comp64 = _weight_grads(compile_model(reference), reference, x64, y)
    model.zero_grad(set_to_none=True)
    return {
        "loss": {
            "eager_fp32": loss32,
            "compiled_fp32": loss_c,
            "eager_fp64": loss64,
            "compiled_fp64": loss_c64,
        },
        "compiled_fp64_vs_eager_fp64": _spread(comp64, ref),
        "eager_vs_fp64": _spread(eager, ref),
        "compiled_vs_fp64": _spread(comp, ref),
        "compiled_vs_eager": _spread(comp, eager),
    }


def describe(g: Dict[str, Any]) -> str:
    """grad_precision's result in one line (the bench's table and scripts/gpu_bench.py's)."""
    return (
        "weight-grad rel err, median / max of %d layers: compiled vs eager, both float64 "
        "%.2g / %.2g; float32 vs float64: eager %.2g / %.2g, compiled %.2g / %.2g"
        % (
            g["eager_vs_fp64"]["layers"],
            g["compiled_fp64_vs_eager_fp64"]["median"],
            g["compiled_fp64_vs_eager_fp64"]["max"],
            g["eager_vs_fp64"]["median"],
            g["eager_vs_fp64"]["max"],
            g["compiled_vs_fp64"]["median"],
            g["compiled_vs_fp64"]["max"],
        )
    )
