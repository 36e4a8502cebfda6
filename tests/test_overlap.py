"""--overlap (densenet/overlap.py): the split convolution backward gives the same gradients.

On the CPU there is no second stream, so these run the same split backward in order: every
weight gradient, the optimizer hook and the copies a cell profiles are checked here; that the
side stream keeps the bits is checked on the GPU (bench's fast_vs_serial, BENCHMARKS.md).
On the CPU the split backward calls the very op autograd's own convolution backward calls, and
the join does nothing, so equal gradients alone would hold without either: the tests also check
that every routed convolution is a _Conv2d node of the autograd graph and that the optimizer
calls the join before each step.
"""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from densenet import celldir, compiled, overlap, recipe
from densenet.canary import NoncontigGradConv2d
from densenet.models import DenseNet, build_model
from densenet.steps import Accumulator, EagerStep, make_step

CPU = torch.device("cpu")


def batch(n=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def node_counts(loss):
    """How many nodes of each kind (e.g. _Conv2dBackward) the autograd graph of `loss` holds."""
    counts, seen, todo = {}, set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        counts[type(node).__name__] = counts.get(type(node).__name__, 0) + 1
        todo.extend(fn for fn, _ in node.next_functions)
    return counts


def backward(model, x, y):
    """(the kinds of node in the loss's backward graph, the parameter gradients) of one batch."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    nodes = node_counts(loss)
    loss.backward()
    return nodes, [p.grad.clone() for p in model.parameters()]


def grads(model, x, y):
    return backward(model, x, y)[1]


def routed_through_split_backward(nodes, n_conv):
    """Every routed convolution is a _Conv2d node and none is left to autograd's own
    convolution backward (ConvolutionBackward0, or another name on another torch)."""
    return nodes.get("_Conv2dBackward") == n_conv and not [n for n in nodes if "Convolution" in n]


def twins(**kw):
    torch.manual_seed(0)
    plain = build_model("densenet-bc40-k12", **kw)
    routed = copy.deepcopy(plain)
    opt = torch.optim.SGD(routed.parameters(), lr=0.1)
    return plain, routed, opt


def test_split_backward_gives_the_same_gradients_bitwise():
    plain, routed, opt = twins()
    n_conv = sum(type(m) is nn.Conv2d for m in plain.modules())
    assert overlap.install(routed, opt, CPU) == n_conv > 30
    x, y = batch()
    nodes, got = backward(routed, x, y)
    assert routed_through_split_backward(nodes, n_conv), nodes
    for a, b in zip(grads(plain, x, y), got):
        assert torch.equal(a, b)


def test_convolutions_with_bias_get_their_bias_gradient():
    plain, routed, opt = twins(bias=True)
    n_conv = overlap.install(routed, opt, CPU)
    x, y = batch()
    nodes, got = backward(routed, x, y)
    assert routed_through_split_backward(nodes, n_conv), nodes
    assert all(g is not None for g in got)
    for a, b in zip(grads(plain, x, y), got):
        assert torch.equal(a, b)


def test_the_canary_keeps_its_own_backward():
    # The canary's bug lives in its backward: routing it through the split backward would
    # silently cure the injected fault.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), NoncontigGradConv2d(4, 4, 1))
    assert overlap.install(model, torch.optim.SGD(model.parameters(), lr=0.1), CPU) == 1
    assert "forward" in vars(model[0]) and "forward" not in vars(model[1])
    nodes = node_counts(model(torch.randn(1, 3, 8, 8)).sum())
    assert nodes.get("_Conv2dBackward") == 1, nodes  # the plain conv's; the canary keeps its own
    canary = build_model("densenet-bc40-k12", canary=True)
    assert overlap.install(canary, torch.optim.SGD(canary.parameters(), lr=0.1), CPU) == 0


class JoinLog(overlap.WeightGradStream):
    """The side stream as install() makes it, recording each join: how many parameters the
    optimizer holding it had momentum for at that moment. The CPU's join does nothing, so a
    dropped hook, or one run after the step, changes no number here; on a GPU either is a race
    between the side stream's .grad writes and the optimizer that reads them."""

    made = []  # every instance, so a test can find the one install() made

    def __init__(self, device):
        super().__init__(device)
        self.joins = []
        JoinLog.made.append(self)

    def join(self, *args):
        optimizer = args[0]  # a step pre-hook is called as hook(optimizer, args, kwargs)
        self.joins.append(len(optimizer.state))
        super().join(*args)


def test_training_steps_follow_the_same_trajectory(monkeypatch):
    monkeypatch.setattr(overlap, "WeightGradStream", JoinLog)
    monkeypatch.setattr(JoinLog, "made", [])
    plain, routed, _ = twins()
    x, y = batch(8)
    losses = []
    for model, routed_here in ((plain, False), (routed, True)):
        opt = recipe.make_optimizer("sgd", model.parameters(), 0.1)  # momentum, weight decay
        if routed_here:
            overlap.install(model, opt, CPU)
        step = EagerStep(model, opt, Accumulator(CPU), sync=False)
        for _ in range(3):
            step(x, y)
        losses.append(float(step.acc.loss_sum))
    # One side stream, joined once per step and before it: the first join comes before the
    # optimizer has made any momentum buffer, the later ones after it made one per parameter.
    [side] = JoinLog.made
    assert side.joins == [0] + [len(list(routed.parameters()))] * 2, side.joins
    assert losses[0] == losses[1]
    for a, b in zip(plain.state_dict().values(), routed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_copy_of_a_routed_model_fills_its_own_gradients():
    # kernels.conv_kernels profiles a deep copy after training: its backward must not write
    # into the training model's .grad.
    _, routed, opt = twins()
    overlap.install(routed, opt, CPU)
    twin = copy.deepcopy(routed)
    x, y = batch()
    F.cross_entropy(twin(x), y).backward()
    assert all(p.grad is None for p in routed.parameters())
    assert all(p.grad is not None for p in twin.parameters())


def test_make_step_installs_it_only_for_the_cuda_graph_step():
    model = build_model("densenet-bc40-k12")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step, why = make_step(model, opt, Accumulator(CPU), CPU, True, "sgd", overlap=True)
    assert step.overlap is False and why == "CUDA graphs need a CUDA device"
    assert not any("forward" in vars(m) for m in model.modules())


def test_a_torch_without_step_pre_hooks_gets_no_overlap():
    class OldOptimizer(object):  # torch < 2.0 has no Optimizer.register_step_pre_hook
        pass

    model = build_model("densenet-bc40-k12")
    assert overlap.install(model, OldOptimizer(), CPU) == 0
    assert not any("forward" in vars(m) for m in model.modules())


def test_overlap_does_not_change_a_cells_identity():
    cfg = {"model": "densenet-bc40-k12", "out": "x", "overlap": "on"}
    assert celldir.resume_key(cfg) == celldir.resume_key(dict(cfg, overlap="off"))


@pytest.mark.slow
def test_under_torch_compile_each_routed_convolution_is_a_declared_graph_break():
    # scripts/gpu_explore.py's +compile+overlap: dynamo compiles the code between two
    # convolutions, one graph per layer width (9 here, past torch's default limit of 8, which
    # would run the rest eagerly), and leaves each convolution with its split backward to
    # eager autograd; the gradients stay eager's. ~45 s with a cold inductor cache.
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    plain = DenseNet(22, 4, True).double()  # 3 layers per block, growth 4: quick to compile
    routed = copy.deepcopy(plain)
    assert overlap.install(routed, torch.optim.SGD(routed.parameters(), lr=0.1), CPU) == 21
    x, y = batch()
    want = grads(plain, x.double(), y)
    got = grads(compiled.compile_model(routed), x.double(), y)
    for a, b in zip(got, want):
        assert float((a - b).norm() / b.norm()) < 1e-12  # float64: reordered sums only
    breaks = counters["graph_break"]
    assert breaks and all("torch.compiler.disable" in reason for reason in breaks), breaks
    assert not counters["unimplemented"], dict(counters["unimplemented"])  # e.g. the limit
    assert counters["frames"]["ok"] == counters["frames"]["total"] > 21
    torch._dynamo.reset()
