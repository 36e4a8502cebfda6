"""`--overlap on`: convolution weight gradients on a second CUDA stream, beside the backward chain.

Why: on an H200 the compiled CUDA-graph step of DenseNet-BC-100 spends ~6 of its 16.6 ms in
cuDNN's `wgrad_alg0_engine`, ~62 us per call for weights of at most 48x342 or 12x48x3x3, too
little work to fill 132 SMs, and runs each one after the input gradient of the same layer.
The input-gradient chain (dgrad, BN backward, ReLU backward) is what the next layer's
backward waits for; no later input gradient needs a weight gradient. So the weight gradients
can run beside that chain on a side stream, and only the optimizer step waits for them.

What stays the same: each convolution's backward is the same two cuDNN calls the ordinary
backward makes (aten.convolution_backward with output_mask (input, -, -) and (-, weight, -)),
the same algorithms under the same autotuning, so --deterministic runs give the same bits.
Measured on an H200 (bench, BENCHMARKS.md): the CUDA-graph step 1.13x faster in fp32 (18.7 vs
21.2 ms), 1.08x with TF32, 1.31x with cuDNN off (163 vs 213 ms); bitwise equal to the serial
step under --deterministic on and with cuDNN off; +2.7% peak memory.

What changes: autograd no longer accumulates the weight (and bias) gradients; the side stream
writes `.grad` itself, and `join()` must run before anything reads them (`install` makes it an
optimizer step pre-hook). The trainer installs it only for the CUDA-graph step (steps.py),
where the whole step, side stream included, is one captured graph, and not under --compile
(`wanted`): there every routed convolution splits the compiled model into per-layer graphs
(_routed_forward), which is correct (tests/test_overlap.py) but not yet timed on a GPU
against the whole-model graph (scripts/gpu_explore.py +compile+overlap). Subclasses of
Conv2d (the canary) keep their own backward. On the CPU there is no second stream: the same split
backward runs in order, which is how the tests check the gradients.
"""

import functools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class WeightGradStream(object):
    """The side stream (None on the CPU) and the join that makes its results visible."""

    def __init__(self, device):
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def join(self, *unused):
        if self.stream is not None:
            torch.cuda.current_stream().wait_stream(self.stream)

    def __deepcopy__(self, memo):
        # A copied model (kernels.conv_kernels profiles one) shares the stream; CUDA streams
        # cannot be copied.
        return self


def _accumulate(param, grad):
    if param.grad is None:
        param.grad = grad
    else:
        param.grad += grad


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, conv, side):
        ctx.save_for_backward(x)
        ctx.conv, ctx.side = conv, side
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        conv, side = ctx.conv, ctx.side
        weight, bias = conv.weight, conv.bias
        bias_sizes = None if bias is None else [bias.shape[0]]
        args = (grad, x, weight, bias_sizes, conv.stride, conv.padding, conv.dilation, False)
        args += ([0, 0], conv.groups)
        backward = torch.ops.aten.convolution_backward
        if side.stream is None:
            _param_grads(backward(*args, [False, True, bias is not None]), weight, bias)
        else:
            side.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side.stream):
                _param_grads(backward(*args, [False, True, bias is not None]), weight, bias)
            # The caching allocator must not hand these to the main stream while the side
            # stream may still read them.
            grad.record_stream(side.stream)
            x.record_stream(side.stream)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = backward(*args, [True, False, False])[0]
        return grad_x, None, None, None, None


def _param_grads(grads, weight, bias):
    _accumulate(weight, grads[1])
    if bias is not None:
        _accumulate(bias, grads[2])


@functools.lru_cache(maxsize=None)
def _routed_forward():
    """_forward as install() routes it: under torch.compile, a graph break at each routed
    convolution, on purpose. Dynamo would otherwise trace _Conv2d, whose backward writes
    `.grad` on another stream, and break its graph there anyway, messily. With the break
    declared, dynamo compiles the code between two convolutions (BN, ReLU, concatenation) into
    one graph per layer width (compiled.py raises its recompile limit for that) and runs each
    convolution, split backward and side stream included, as in eager: every tensor the side
    stream reads is then a graph's output or an eager tensor, which the caching allocator
    protects with record_stream, never a buffer that inductor reuses inside a graph. Outside
    torch.compile the wrapper changes nothing. Made when install() first runs, not at import:
    torch.compiler.disable imports dynamo (~1 s)."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(_forward) if disable is not None else _forward


def _forward(conv, side, x):
    return _Conv2d.apply(x, conv.weight, conv.bias, conv, side)


def wanted(option: str, compiled: bool) -> bool:
    """Whether a run should install the overlap: `--overlap on`, and not under --compile, where
    each routed convolution splits the compiled model into per-layer graphs (_routed_forward),
    correct but not yet timed on a GPU against the whole-model graph. The one place that rule
    lives (train.py, bench/runners.py)."""
    return option == "on" and not compiled


def install(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> Any:
    """Route every plain Conv2d of `model` (zero padding; not a subclass such as the canary's)
    through the split backward and make `optimizer` join the side stream before each step.
    Returns the number of convolutions routed (0 on a torch without step pre-hooks, < 2.0)."""
    if not hasattr(optimizer, "register_step_pre_hook"):
        return 0
    side = WeightGradStream(device)
    routed = 0
    for m in model.modules():
        if type(m) is nn.Conv2d and m.padding_mode == "zeros":
            m.forward = functools.partial(_routed_forward(), m, side)
            routed += 1
    if routed:
        optimizer.register_step_pre_hook(side.join)
    return routed
