"""The canary: an injected copy of the 2017 cuDNN bug (fixed by PyTorch PR 708).

cuDNN's convolution backward in PyTorch 0.1.8 read a non-contiguous ``grad_output`` (the
channel slices that ``torch.cat``'s backward hands each producer) as if it were contiguous.
``NoncontigGradConv2d`` reproduces exactly that on any device: when its grad_output is not
contiguous it reinterprets the same memory, from the same storage offset, with contiguous
strides, then runs the ordinary convolution backward on those wrong numbers. With a
contiguous grad_output it is an ordinary convolution, so forward passes and gradient checks
with plain grad layouts see nothing wrong: the failure only shows through a concatenation.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def contiguous_strides(shape):
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def misread_as_contiguous(t):
    """The bug: view t's memory from its storage offset as if t were laid out contiguously.

    For a channel slice of an (N, C, H, W) gradient the read stays inside the storage (the
    slice starts at most (C - c) * H * W elements in and reads N * c * H * W), but after the
    first image's channels it reads the wrong images and channels.
    """
    if t.is_contiguous():
        return t
    return torch.as_strided(t, t.shape, contiguous_strides(t.shape), t.storage_offset())


class _BuggyConvBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.conf = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        g = misread_as_contiguous(grad_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(
                x.shape, weight, g, stride, padding, dilation, groups
            )
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(
                x, weight.shape, g, stride, padding, dilation, groups
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


def noncontig_grad_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv2d with the canary's backward (functional form, for torch.autograd.gradcheck)."""
    return _BuggyConvBackward.apply(x, weight, bias, stride, padding, dilation, groups)


class NoncontigGradConv2d(nn.Conv2d):
    """nn.Conv2d whose backward misreads a non-contiguous grad_output (the canary)."""

    def forward(self, x):
        return _BuggyConvBackward.apply(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
