"""The gradient stage: `python -m densenet gradcheck --out DIR` writes DIR/gradcheck.json.

Three checks for one environment (device x cuDNN x TF32 x canary), in this order:
1. whole_model: the model under test (float32 on the device, flags as configured, canary
   if asked for) against a clean float64 CPU copy with the same weights and batch, per
   conv/linear layer, for the weight gradient and for the layer's input gradient.
2. dense_layer: torch.autograd.gradcheck in float64 on the device of one dense layer, with
   contiguous and non-contiguous grad_outputs, clean and canary, cuDNN on and off.
3. determinism: two seeded K-step trainings, bitwise equal or not.

Verdict, from 1 and from the cases of 2 that match this environment:
  fail               a non-finite gradient; a matching dense-layer gradcheck case failed; or
                     max rel err > FP32_MAX without TF32, > TF32_ABSURD with it
  pass               max rel err <= FP32_MAX (float32 accuracy)
  reduced-precision  TF32 in effect on CUDA and FP32_MAX < max rel err <= TF32_ABSURD: the
                     measured error is reported, the environment is not failed for it.
Determinism is recorded beside the verdict, not folded into it.

Exit codes: 0 for every verdict (a failing environment is a result: its cells are still
trained and marked); 4 when the device cannot run here (verdict "skipped", as `train` does);
1 when the check itself crashes (no gradcheck.json is written).
"""

import argparse
import math
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .. import atomic, envinfo, numerics
from ..device import resolve_device
from ..models import build_model
from ..outcome import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, Skip, one_line
from .batch import make_batch
from .dense_layer import check_dense_layer
from .determinism import check_determinism
from .whole_model import compare

__all__ = ["FP32_MAX", "TF32_ABSURD", "decide", "canary_record", "run_checks", "main"]

# float32 gradients through ~40 layers agree with float64 to ~1e-6 (measured on CPU); 1e-4
# leaves two orders of margin while staying far below any real bug (the canary gives >= 1).
FP32_MAX = 1e-4
# TF32 keeps 10 mantissa bits: an H200 showed 5-13% on DenseNet-BC-40. Beyond 0.5 the gradient
# no longer points the same way; that is a broken environment, TF32 or not.
TF32_ABSURD = 0.5


def decide(
    max_rel_err: Optional[float],
    nonfinite: List[str],
    tf32: bool,
    configured_gradcheck_ok: bool,
) -> Tuple[str, List[str]]:
    """(verdict, reasons) from the measured numbers; see the module docstring."""
    reasons = []
    if nonfinite:
        reasons.append("non-finite gradient or error in %s" % ", ".join(nonfinite))
    if not configured_gradcheck_ok:
        reasons.append("float64 gradcheck of the dense layer failed in this environment")
    limit = TF32_ABSURD if tf32 else FP32_MAX
    if max_rel_err is not None and max_rel_err > limit:
        reasons.append(
            "max rel err %.3g > %g (%s)" % (max_rel_err, limit, "TF32" if tf32 else "float32")
        )
    if reasons:
        return "fail", reasons
    if max_rel_err is not None and max_rel_err > FP32_MAX:
        return "reduced-precision", [
            "TF32 in effect: max rel err %.3g > %g, <= %g" % (max_rel_err, FP32_MAX, TF32_ABSURD)
        ]
    return "pass", []


def canary_record(cfg: Mapping[str, Any], layout: Mapping[str, int]) -> Dict[str, Any]:
    """Whether the canary could bite in the full model: it needs non-contiguous grad_outputs."""
    on = cfg["canary"] == "noncontig-grad"
    rec = {"configured": on, "exercised": None, "note": None}
    if on:
        rec["exercised"] = layout["non_contiguous"] > 0
        if not rec["exercised"]:
            rec["note"] = (
                "no convolution received a non-contiguous grad_output (a batch of one, a model "
                "without concatenation, or a torch that hands contiguous slices): the canary "
                "cannot bite in this model, so the layer comparison cannot show it"
            )
    return rec


def run_checks(
    cfg: Mapping[str, Any], device: torch.device, flags: Mapping[str, Any]
) -> Dict[str, Any]:
    """The three checks; returns the gradcheck.json record without environment fields."""
    canary = cfg["canary"] == "noncontig-grad"

    def build():
        return build_model(cfg["model"], canary=canary)

    x, y = make_batch(cfg["batch_size"], device)
    numerics.seed_everything(cfg["seed"])
    model = build().to(device)
    reference = build_model(cfg["model"]).double()
    reference.load_state_dict(model.state_dict())
    timings, t0 = {}, _clock(device)
    grads = compare(model, reference, x, y)
    del model, reference
    timings["compare"], t0 = _clock(device) - t0, _clock(device)

    errs = [
        (layer["name"], layer[k])
        for layer in grads["layers"]
        for k in ("rel_err_weight", "rel_err_input")
    ]
    nonfinite = sorted({name for name, e in errs if not math.isfinite(e)})
    values = sorted(e for _, e in errs if math.isfinite(e))
    max_rel = None if nonfinite or not values else values[-1]
    tf32 = device.type == "cuda" and bool(flags.get("tf32_effective"))

    layer = check_dense_layer(device, "canary" if canary else "clean", cfg["cudnn"], cfg["seed"])
    timings["gradcheck"], t0 = _clock(device) - t0, _clock(device)
    det = check_determinism(
        build, x, y, cfg["optimizer"], cfg["seed"], cfg["steps"], cfg["deterministic"]
    )
    timings["determinism"] = _clock(device) - t0
    verdict, reasons = decide(max_rel, nonfinite, tf32, layer["configured_passed"])
    canary_rec = canary_record(cfg, grads["grad_layout"])
    if canary_rec["note"]:
        reasons.append(canary_rec["note"])
    return {
        "verdict": verdict,
        "reasons": reasons,
        "precision": "tf32" if tf32 else "float32",
        "thresholds": {"fp32_max": FP32_MAX, "tf32_absurd": TF32_ABSURD},
        "max_rel_err": max_rel,
        "median_rel_err": values[len(values) // 2] if values else None,
        "worst_layer": max(errs, key=lambda t: t[1] if math.isfinite(t[1]) else math.inf)[0],
        "layers": grads["layers"],
        "forward": grads["forward"],
        "grad_layout": grads["grad_layout"],
        "canary": canary_rec,
        "gradcheck": layer,
        "determinism": det,
        "device": str(device),
        "timings_s": timings,
        "batch": {
            "size": int(y.shape[0]),
            "source": "synthetic (generated, fixed)",
            "normalization": "cifar10",
        },
    }


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()  # time finished work, not queued kernels
    return time.perf_counter()


def summary_line(result: Mapping[str, Any]) -> str:
    """The one stdout line of the stage."""
    m = result["max_rel_err"]
    return "gradcheck %s on %s (%s): max rel err %s -> %s" % (
        result["config"]["model"],
        result["device"],
        result["precision"],
        "non-finite" if m is None else "%.3g" % m,
        result["verdict"],
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of `python -m densenet gradcheck`; returns the exit code."""
    cfg = {k: v for k, v in vars(args).items() if k != "command"}
    path = os.path.join(cfg["out"], "gradcheck.json")
    t0 = time.perf_counter()
    try:
        device = resolve_device(cfg["device"])
    except Skip as exc:
        atomic.write_json(
            path,
            {
                "verdict": "skipped",
                "reasons": [str(exc)],
                "config": cfg,
                "environ": envinfo.environ(cfg.get("image_ref")),
                "flags": numerics.read_flags(cfg["seed"]),
            },
        )
        sys.stderr.write("skipped: %s\n" % exc)
        return EXIT_SKIPPED
    flags = numerics.configure(cfg["cudnn"], cfg["tf32"], cfg["deterministic"], cfg["seed"])
    flags["applicability"] = numerics.applicability(device)
    try:
        result = run_checks(cfg, device, flags)
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.write("error: %s\n" % one_line(exc))
        return EXIT_FAILED
    result.update(
        {
            "config": cfg,
            "environ": envinfo.environ(cfg.get("image_ref")),
            "flags": flags,
            "wall_s": time.perf_counter() - t0,
        }
    )
    try:
        atomic.write_json(path, result)
    except OSError as exc:  # e.g. a full disk: the previous gradcheck.json stays as it was
        sys.stderr.write("error: cannot write %s: %s\n" % (path, exc))
        return EXIT_FAILED
    for reason in result["reasons"]:
        sys.stderr.write("note: %s\n" % reason)
    if not result["gradcheck"]["all_as_expected"]:
        sys.stderr.write(
            "warning: some dense-layer gradcheck cases did not behave as expected "
            "(see gradcheck.cases in %s)\n" % path
        )
    print(summary_line(result), flush=True)
    return EXIT_OK
