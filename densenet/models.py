"""DenseNet variants for CIFAR, built like the official Lua Torch code (liuzhuang13/DenseNet).

BN-ReLU-conv ordering, bottleneck 1x1 to 4k channels, compression 0.5, He-normal fan-out
init, an avg_pool2d(8) head (adaptive pooling has a non-deterministic CUDA backward) and no
conv bias by default. Each dense layer concatenates its output onto its input
(``torch.cat([x, new], 1)``), so the backward of that cat hands every producing conv a
non-contiguous channel slice of the gradient: the tensor layout behind the 2017 cuDNN bug.
"""

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .canary import NoncontigGradConv2d
from .compat import accepts

__all__ = [
    "DENSENETS",
    "MODEL_NAMES",
    "STEMS",
    "INITS",
    "DenseLayer",
    "DenseNet",
    "VGG16BN",
    "build_model",
    "count_params",
    "count_flops",
]

# name -> (depth, growth rate, bottleneck+compression). Param counts: tests/test_models.py.
DENSENETS = {
    "densenet40-k12": (40, 12, False),
    "densenet100-k12": (100, 12, False),
    "densenet100-k24": (100, 24, False),
    "densenet-bc40-k12": (40, 12, True),
    # Not in the paper: one layer per dense block, the smallest DenseNet-BC (20,902 parameters,
    # ~7x cheaper than bc40-k12). It runs every code path of the others (dense blocks, the
    # concatenations the canary corrupts, transitions) in seconds on a CPU: the tests' cells.
    "densenet-bc10-k12": (10, 12, True),
    "densenet-bc100-k12": (100, 12, True),
    "densenet-bc250-k24": (250, 24, True),
    "densenet-bc190-k40": (190, 40, True),
}
# The control model of the 2017 post-mortem: a plain conv net trained by the same loop.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
MODEL_NAMES = sorted(DENSENETS) + ["vgg16-bn"]
STEMS = ("paper", "lua")
INITS = ("lua", "chainer")


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 (optionally preceded by a BN-ReLU-conv1x1 bottleneck to 4k channels)."""

    def __init__(self, in_ch, growth, bottleneck, dropout, conv, efficient=False, bn=None):
        super().__init__()
        bn = bn or nn.BatchNorm2d
        self.dropout = dropout
        self.efficient = bool(efficient)  # recompute the bottleneck in backward
        if bottleneck:
            self.norm1 = bn(in_ch)
            self.conv1 = conv(in_ch, 4 * growth, 1)
            mid = 4 * growth
        else:
            self.norm1 = self.conv1 = None
            mid = in_ch
        self.norm2 = bn(mid)
        self.conv2 = conv(mid, growth, 3)

    def bottleneck(self, x, update_stats=True):
        """BN-ReLU-conv1x1 on the concatenated input (the memory-hungry part, see efficient)."""
        if update_stats:
            h = self.norm1(x)
        else:
            # The recomputation in backward: the forward pass already updated the running
            # statistics. The same op with momentum 0 gives the same output and leaves them
            # as they are (r * 1 + b * 0 == r), and saves the same tensors, as checkpoint checks.
            n = self.norm1
            h = F.batch_norm(x, n.running_mean, n.running_var, n.weight, n.bias, True, 0.0, n.eps)
        out = self.conv1(F.relu(h))
        return F.dropout(out, self.dropout, self.training) if self.dropout else out

    def forward(self, x):
        out = x
        if self.conv1 is not None:
            if self.efficient and x.requires_grad:
                # Recompute BN-ReLU-conv1x1 in backward instead of storing its activations
                # (gpleiss/efficient_densenet_pytorch). Same arithmetic, less memory.
                out = checkpoint(
                    _first_call_updates_stats(self.bottleneck),
                    x,
                    preserve_rng_state=bool(self.dropout and self.training),
                )
            else:
                out = self.bottleneck(x)
        out = self.conv2(F.relu(self.norm2(out)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1-avgpool2 between dense blocks (compresses channels for BC)."""

    def __init__(self, in_ch, out_ch, dropout, conv, bn=None):
        super().__init__()
        self.dropout = dropout
        self.norm = (bn or nn.BatchNorm2d)(in_ch)
        self.conv = conv(in_ch, out_ch, 1)

    def forward(self, x):
        out = self.conv(F.relu(self.norm(x)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return F.avg_pool2d(out, 2)


class DenseNet(nn.Module):
    """DenseNet / DenseNet-BC for 32x32 inputs: stem conv, 3 dense blocks, BN-ReLU-avgpool8-FC."""

    def __init__(
        self,
        depth,
        growth,
        bc,
        num_classes=10,
        stem="paper",
        dropout=0.0,
        bias=False,
        canary=False,
        efficient=False,
        init="lua",
        bn_eps=1e-5,
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError("stem: expected one of %s, got %r" % (", ".join(STEMS), stem))
        n = (depth - 4) // (6 if bc else 3)
        # Table 2's plain DenseNets were trained with the 2016 Lua code's 16-channel stem (their
        # parameter counts), its BC models with 2k; the Lua code today (and bamos) use 2k always.
        ch = 2 * growth if (bc or stem == "lua") else 16
        conv = _conv_factory(bias, canary)
        bn = _bn_factory(bn_eps)
        self.stem = conv(3, ch, 3)
        blocks = []
        for b in range(3):
            for _ in range(n):
                blocks.append(DenseLayer(ch, growth, bc, dropout, conv, efficient, bn))
                ch += growth
            if b < 2:
                out_ch = ch // 2 if bc else ch
                blocks.append(Transition(ch, out_ch, dropout, conv, bn))
                ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.norm = bn(ch)
        self.fc = nn.Linear(ch, num_classes)
        self.efficient = bool(efficient)
        init_weights(self, init, first=self.stem)

    def set_efficient(self, on: bool) -> None:
        """Turn the checkpointed (memory-efficient) bottleneck on or off."""
        self.efficient = bool(on)
        for m in self.modules():
            if isinstance(m, DenseLayer):
                m.efficient = bool(on)

    def forward(self, x):
        out = self.features(self.stem(x))
        out = F.avg_pool2d(F.relu(self.norm(out)), 8)
        return self.fc(out.flatten(1))


class VGG16BN(nn.Module):
    """VGG-16 with batch norm for CIFAR (512-d features after five max-pools, one FC)."""

    def __init__(
        self, num_classes=10, dropout=0.0, bias=False, canary=False, init="lua", bn_eps=1e-5
    ):
        super().__init__()
        conv = _conv_factory(bias, canary)
        bn = _bn_factory(bn_eps)
        layers, ch = [], 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [conv(ch, v, 3), bn(v), nn.ReLU(inplace=True)]
                if dropout:
                    layers.append(nn.Dropout(dropout))
                ch = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self, init, first=layers[0])

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def _conv_factory(bias, canary):
    cls = NoncontigGradConv2d if canary else nn.Conv2d

    def conv(cin, cout, k):
        return cls(cin, cout, k, padding=k // 2, bias=bias)

    return conv


def _bn_factory(eps):
    def bn(ch):
        return nn.BatchNorm2d(ch, eps=eps)

    return bn


def _first_call_updates_stats(bottleneck):
    """Wrap a bottleneck for checkpointing: the first call (forward) updates BN running
    statistics, later calls (the recomputation in backward) do not."""
    calls = []

    def run(x):
        calls.append(1)
        return bottleneck(x, update_stats=len(calls) == 1)

    return run


def checkpoint(fn, x, preserve_rng_state=True):
    """torch.utils.checkpoint without reentrant autograd where the installed torch allows it.

    Callers pass preserve_rng_state=False when fn draws no random numbers: saving the CUDA RNG
    state is then useless, and it is illegal inside a CUDA-graph capture.
    """
    from torch.utils.checkpoint import checkpoint as ckpt

    if accepts(ckpt, "use_reentrant"):
        return ckpt(fn, x, use_reentrant=False, preserve_rng_state=preserve_rng_state)
    return ckpt(fn, x, preserve_rng_state=preserve_rng_state)  # torch < 1.11: reentrant only


def init_weights(model: nn.Module, init: str = "lua", first: Optional[nn.Module] = None) -> None:
    """Initialise every conv, BN and FC layer as recipe init `init` does; biases zero, BN (1, 0).

    lua: He-normal with fan-out for every conv (std sqrt(2 / (k*k*out))); the FC layer keeps
    PyTorch's default, the Lua code's Linear default uniform(+-1/sqrt(fan_in)) rule.
    chainer: He-normal with fan-in (std sqrt(2 / (k*k*in))) for the convs after `first` (the
    stem), LeCun-normal (std sqrt(1 / fan_in)) for the stem and the FC layer: chainer's
    HeNormal for the dense and transition convs and its default initializer for the others,
    and the BN running variance 0 (chainer's BatchNormalization; torch's starts at 1).
    """
    if init not in INITS:
        raise ValueError("init: expected one of %s, got %r" % (", ".join(INITS), init))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            if init == "lua":
                std = math.sqrt(2.0 / (k * m.out_channels))
            else:
                std = math.sqrt((1.0 if m is first else 2.0) / (k * m.in_channels // m.groups))
            m.weight.data.normal_(0, std)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
            if init == "chainer":
                m.running_var.zero_()  # Chainer's avg_var starts at 0, torch's at 1
        elif isinstance(m, nn.Linear):
            if init == "chainer":
                m.weight.data.normal_(0, math.sqrt(1.0 / m.in_features))
            m.bias.data.zero_()


def build_model(
    name: str,
    num_classes: int = 10,
    stem: str = "paper",
    dropout: float = 0.0,
    bias: bool = False,
    canary: bool = False,
    efficient: bool = False,
    init: str = "lua",
    bn_eps: float = 1e-5,
) -> nn.Module:
    """Build a model by name; an unknown name raises ValueError listing the valid ones."""
    if name == "vgg16-bn":
        return VGG16BN(
            num_classes, dropout=dropout, bias=bias, canary=canary, init=init, bn_eps=bn_eps
        )
    if name not in DENSENETS:
        raise ValueError("model: expected one of %s, got %r" % (", ".join(MODEL_NAMES), name))
    depth, growth, bc = DENSENETS[name]
    return DenseNet(
        depth,
        growth,
        bc,
        num_classes,
        stem=stem,
        dropout=dropout,
        bias=bias,
        canary=canary,
        efficient=efficient,
        init=init,
        bn_eps=bn_eps,
    )


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: int = 32) -> int:
    """Forward FLOPs per image (2 x multiply-accumulates of convs and linears)."""
    macs = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            macs[0] += out.numel() * k
        else:
            macs[0] += m.in_features * m.out_features

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 2 * macs[0]
