"""torch.autograd.gradcheck of one dense layer (BN + ReLU + conv, concatenated onto its input)
in float64 on the device under test, for the grad_output layouts behind the 2017 bug.

Layouts of the gradient that reaches the convolution's output:
  contiguous     the layer returns the conv output; gradcheck's grad_outputs are contiguous.
  channel-slice  an identity whose backward hands its gradient on as a channel slice of a
                 larger buffer, built explicitly (the PR 708 test case), whatever cat does.
  cat            the natural case, torch.cat([x, conv(relu(bn(x)))], 1): cat's backward
                 narrows the gradient into per-input views.
Each for the clean convolution and the canary, with cuDNN on and off on CUDA (recorded as not
applicable on CPU). Expected: the clean layer passes everywhere; the canary passes with a
contiguous grad_output and fails with a non-contiguous one. The layout the convolution really
received is recorded per case, so a torch that hands contiguous slices shows up as such
instead of as a silent pass.
"""

import contextlib
from typing import Any, Dict

import torch
import torch.nn.functional as F

from ..canary import noncontig_grad_conv2d

__all__ = ["SHAPE", "TOLERANCES", "LAYOUTS", "CONVS", "run_case", "check_dense_layer"]

# N >= 2: with a single image a channel slice of (1, C, H, W) is contiguous and cannot bite.
SHAPE = {"n": 2, "in_channels": 3, "growth": 2, "size": 4, "kernel": 3}
TOLERANCES = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}  # torch.autograd.gradcheck's defaults
LAYOUTS = ("contiguous", "channel-slice", "cat")
CONVS = ("clean", "canary")


class _ChannelSliceGrad(torch.autograd.Function):
    """Identity forward; backward returns its gradient as channels [C:] of an (N, C + c, H, W)
    buffer (zeros elsewhere): the non-contiguous layout torch.cat's backward produces."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = grad.shape
        buf = grad.new_zeros(n, SHAPE["in_channels"] + c, h, w)
        buf[:, SHAPE["in_channels"] :].copy_(grad)
        return buf[:, SHAPE["in_channels"] :]


def dense_layer(conv, layout, seen):
    """f(x, gamma, beta, weight) for gradcheck; appends the conv's grad_output layout
    (True = contiguous) to `seen` on every backward."""
    conv2d = noncontig_grad_conv2d if conv == "canary" else F.conv2d
    pad = SHAPE["kernel"] // 2

    def fn(x, gamma, beta, weight):
        h = F.relu(F.batch_norm(x, None, None, gamma, beta, True, 0.1, 1e-5))
        out = conv2d(h, weight, None, 1, pad)
        if out.requires_grad:  # not during gradcheck's no-grad numerical passes
            out.register_hook(
                lambda g: seen.append(bool(g.is_contiguous())) if g is not None else None
            )
        if layout == "channel-slice":
            return _ChannelSliceGrad.apply(out)
        if layout == "cat":
            return torch.cat([x, out], 1)
        return out

    return fn


def make_inputs(device, seed):
    """Deterministic float64 inputs (drawn on the CPU, so every device sees the same values)."""
    gen = torch.Generator().manual_seed(seed)
    n, c, g, s, k = (SHAPE[key] for key in ("n", "in_channels", "growth", "size", "kernel"))
    x = torch.randn(n, c, s, s, generator=gen, dtype=torch.float64)
    gamma = 1 + 0.1 * torch.randn(c, generator=gen, dtype=torch.float64)
    beta = 0.1 * torch.randn(c, generator=gen, dtype=torch.float64)
    weight = torch.randn(g, c, k, k, generator=gen, dtype=torch.float64)
    weight = weight * (2.0 / (k * k * g)) ** 0.5  # He fan-out, as models.init_weights
    return tuple(t.to(device).requires_grad_(True) for t in (x, gamma, beta, weight))


def max_jacobian_error(fn, inputs, eps):
    """max |analytical - numerical| over the whole Jacobian (central differences), i.e. the
    number behind gradcheck's yes/no."""
    out = fn(*inputs)
    rows = []
    for i in range(out.numel()):
        onehot = torch.zeros(out.numel(), dtype=out.dtype, device=out.device)
        onehot[i] = 1
        grads = torch.autograd.grad(
            out, inputs, onehot.view(out.shape), retain_graph=True, allow_unused=True
        )
        rows.append(
            torch.cat(
                [
                    (torch.zeros_like(t) if g is None else g).reshape(-1)
                    for g, t in zip(grads, inputs)
                ]
            )
        )
    analytical = torch.stack(rows)
    cols = []
    with torch.no_grad():
        for t in inputs:
            flat = t.data.view(-1)
            for j in range(flat.numel()):
                orig = float(flat[j])
                flat[j] = orig + eps
                plus = fn(*inputs).reshape(-1).clone()
                flat[j] = orig - eps
                minus = fn(*inputs).reshape(-1)
                flat[j] = orig
                cols.append((plus - minus) / (2 * eps))
    return float((analytical - torch.stack(cols, 1)).abs().max())


@contextlib.contextmanager
def one_cpu_thread():
    """The cases are tiny float64 ops: OpenMP hand-offs dominate them, and on a shared CPU
    (other processes on the cores) 2 threads measured ~10x slower than 1. The thread count
    changes no result that matters here (pass/fail at gradcheck's tolerances)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextlib.contextmanager
def cudnn_enabled(on):
    prev = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = on
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = prev


def torch_gradcheck(fn, inputs):
    """(passed, first line of gradcheck's complaint or None) from torch.autograd.gradcheck.

    Always with raise_exception=True: torch 1.8's gradcheck drops the result of its Jacobian
    comparison, so with raise_exception=False it returns True for a wrong backward (measured:
    the canary's 2.4 max error "passes" there). Its complaints are RuntimeErrors
    (GradcheckError on newer releases). A crash of the layer itself surfaces before this, in
    max_jacobian_error, which runs the same forward and backward; other exceptions propagate.
    """
    try:
        torch.autograd.gradcheck(fn, inputs, raise_exception=True, **TOLERANCES)
    except RuntimeError as exc:
        return False, (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return True, None


def run_case(device, conv, layout, seed):
    """One gradcheck case: passed, max error, the grad_output layout the conv received."""
    seen = []
    fn = dense_layer(conv, layout, seen)
    inputs = make_inputs(device, seed)
    case = {"conv": conv, "layout": layout, "error": None}
    try:
        case["max_abs_err"] = max_jacobian_error(fn, inputs, TOLERANCES["eps"])
        case["grad_output_contiguous"] = all(seen) if seen else None
        case["passed"], case["gradcheck_message"] = torch_gradcheck(fn, inputs)
    except Exception as exc:  # a crash inside one case is recorded, the other cases still run
        case.setdefault("max_abs_err", None)
        case.setdefault("grad_output_contiguous", all(seen) if seen else None)
        case.setdefault("gradcheck_message", None)
        case["passed"] = False
        case["error"] = "%s: %s" % (type(exc).__name__, (str(exc).strip() or "-").splitlines()[0])
    bites = conv == "canary" and case["grad_output_contiguous"] is False
    case["expected"] = "fail" if bites else "pass"
    case["as_expected"] = case["passed"] == (not bites) and case["error"] is None
    return case


def check_dense_layer(
    device: torch.device, configured_conv: str, configured_cudnn: str, seed: int = 0
) -> Dict[str, Any]:
    """All cases on `device`; "configured" marks those matching the environment under test."""
    if device.type == "cuda":
        settings = [("on", True), ("off", False)]
    else:
        settings = [("not applicable on %s" % device.type, None)]
    cases = []
    with one_cpu_thread():
        for label, enabled in settings:
            for conv in CONVS:
                for layout in LAYOUTS:
                    with cudnn_enabled(
                        torch.backends.cudnn.enabled if enabled is None else enabled
                    ):
                        case = run_case(device, conv, layout, seed)
                    case["cudnn"] = label
                    case["configured"] = conv == configured_conv and (
                        enabled is None or label == configured_cudnn
                    )
                    cases.append(case)
    slices = [c for c in cases if c["conv"] == "canary" and c["layout"] == "channel-slice"]
    return {
        "device": str(device),
        "dtype": "float64",
        "shape": dict(SHAPE),
        "tolerances": dict(TOLERANCES),
        "cases": cases,
        "all_as_expected": all(c["as_expected"] for c in cases),
        "configured_passed": all(c["passed"] for c in cases if c["configured"]),
        # The detector works here if the explicitly non-contiguous canary case failed.
        "canary_detected": all(not c["passed"] for c in slices),
    }
