"""Layer-by-layer gradients of the model under test against a float64 CPU copy of it.

Both models get the same weights and the same batch, BN in training mode (batch statistics)
and no dropout. Per conv/linear layer we compare the weight gradient and the gradient that
reaches the layer's input (an identity "tap" in front of the layer records it), as
||g - g_ref|| / ||g_ref|| in float64.

Numerical trap, ReLU kinks: a pre-activation within float32 rounding of zero can land on the
other side of zero in float64, and the ReLU then passes a gradient in one run and blocks it in
the other. That is an O(1) difference at that element, not an O(eps) one, and it spreads to
every layer upstream: on CPU, DenseNet-BC-40 at batch 16 showed ~2.5e-3 for blocks 1-2 from
eight such elements (and ~1e-6 everywhere else). So the float64 reference follows the device's
ReLU pattern: where the signs disagree, the reference's pre-activation is moved to the
device's side of zero (by no more than its own magnitude, i.e. by less than the float32
rounding), with an identity gradient. The reference is then the float64 gradient of the same
linear piece the device computed on; a wrong backward is still caught, because the patterns
come from the device's forward pass only. The number of moved elements is reported.
Every BatchNorm2d in models.py feeds a ReLU, so the BN outputs are where the signs are taken.
"""

from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LAYER_TYPES", "Probe", "rel_err", "compare"]

LAYER_TYPES = (nn.Conv2d, nn.Linear)
# Smallest positive value used when a float64 pre-activation of exactly 0 must count as positive.
TINY = 1e-300


class _Tap(torch.autograd.Function):
    """Identity whose backward stores the gradient that reaches a layer's input."""

    @staticmethod
    def forward(ctx, x, store, name):
        ctx.store, ctx.name = store, name
        return x.clone()  # a fresh tensor, not a view: later in-place ops cannot trip autograd

    @staticmethod
    def backward(ctx, grad):
        ctx.store[ctx.name] = grad.detach().double().cpu()
        return grad, None, None


class Probe(object):
    """Hooks on one model: input-gradient taps and grad_output layouts of conv/linear layers,
    and the ReLU sign pattern at every BN output (recorded, or imposed from another run)."""

    def __init__(self, model, impose=None):
        self.input_grads, self.grad_out_contiguous, self.signs, self.kinds = {}, {}, {}, {}
        self.impose = impose
        self.moved, self.elements = 0, 0
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, LAYER_TYPES):
                self.kinds[name] = "conv" if isinstance(m, nn.Conv2d) else "linear"
                self.handles.append(m.register_forward_pre_hook(self._tap(name)))
                self.handles.append(m.register_forward_hook(self._layout(name)))
            elif isinstance(m, nn.BatchNorm2d):
                self.handles.append(m.register_forward_hook(self._signs(name)))

    def _tap(self, name):
        def hook(module, inputs):
            return (_Tap.apply(inputs[0], self.input_grads, name),) + tuple(inputs[1:])

        return hook

    def _layout(self, name):
        def on_grad(grad):
            # Non-contiguous grad_outputs are what the 2017 cuDNN backward misread.
            self.grad_out_contiguous[name] = bool(grad.is_contiguous())

        def hook(module, inputs, out):
            if out.requires_grad:
                out.register_hook(on_grad)

        return hook

    def _signs(self, name):
        def hook(module, inputs, out):
            positive = (out.detach() > 0).cpu()
            self.elements += positive.numel()
            if self.impose is None:
                self.signs[name] = positive
                return None
            want = self.impose[name]
            flip = want != positive
            n = int(flip.sum())
            if n == 0:
                return None
            self.moved += n
            mag = out.detach().abs()
            target = torch.where(want, mag.clamp(min=TINY), -mag)
            # Value of the device's side of zero, gradient of the identity.
            return out + torch.where(flip, target - out.detach(), torch.zeros_like(mag))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def rel_err(g: Optional[torch.Tensor], ref: Optional[torch.Tensor]) -> float:
    """||g - ref|| / ||ref|| in float64; 0 for two zero tensors, inf for a zero reference."""
    if g is None or ref is None:
        return float("nan")
    g = g.detach().double().cpu()
    diff, scale = float((g - ref).norm()), float(ref.norm())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def _run(model, x, y, probe):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    probe.remove()
    weights = {}
    for name, m in model.named_modules():
        if isinstance(m, LAYER_TYPES):
            g = m.weight.grad
            weights[name] = None if g is None else g.detach().double().cpu()
    return float(loss.detach()), logits.detach().double().cpu(), weights


def compare(
    model: nn.Module, reference: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Dict[str, Any]:
    """Gradients of `model` (on x's device, as configured) against `reference` (float64 CPU,
    same weights). Returns {"layers": [...], "forward": {...}, "grad_layout": {...}}."""
    model.train()
    reference.train()
    model.zero_grad(set_to_none=True)
    reference.zero_grad(set_to_none=True)
    dev = Probe(model)
    loss, logits, weights = _run(model, x, y, dev)
    ref = Probe(reference, impose=dev.signs)
    ref_loss, ref_logits, ref_weights = _run(reference, x.double().cpu(), y.cpu(), ref)
    layers = []
    for name in weights:
        layers.append(
            {
                "name": name,
                "kind": dev.kinds[name],
                "rel_err_weight": rel_err(weights[name], ref_weights[name]),
                "rel_err_input": rel_err(dev.input_grads.get(name), ref.input_grads.get(name)),
                "grad_output_contiguous": dev.grad_out_contiguous.get(name),
            }
        )
    convs = [v for k, v in dev.grad_out_contiguous.items() if dev.kinds[k] == "conv"]
    return {
        "layers": layers,
        "forward": {
            "loss": loss,
            "loss_ref": ref_loss,
            "logits_rel_err": rel_err(logits, ref_logits),
            "relu_signs_aligned": ref.moved,
            "relu_elements": ref.elements,
        },
        "grad_layout": {
            "conv_grad_outputs": len(convs),
            "non_contiguous": sum(1 for c in convs if not c),
        },
    }
