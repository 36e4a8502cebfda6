"""Training steps: GraphStep's control flow (warmup per batch size, capture, replay, recapture
on lr change, loud fallback) on the CPU with a stand-in for the CUDA calls, and the efficient
(checkpointed) mode computing exactly what the normal mode computes."""

import torch
import torch.nn as nn
from conftest import bottleneck_runs

from densenet.models import build_model
from densenet.recipe import make_optimizer
from densenet.steps import Accumulator, EagerStep, GraphStep, make_step, train_step


class FakeGraph(object):
    """A captured step: runs nothing until replayed, and bakes in the lr it was captured with,
    as SGD's kernels do; replaying it under another lr is the bug recapture prevents."""

    def __init__(self, run, lr, optimizer):
        self.run, self.lr, self.optimizer = run, lr, optimizer

    def replay(self):
        assert self.optimizer.param_groups[0]["lr"] == self.lr, "stale graph replayed"
        self.run()


class CpuGraphStep(GraphStep):
    """GraphStep with its three CUDA calls replaced; everything else is the real class."""

    def __init__(self, *args, fail_capture=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.events, self.fail_capture = [], fail_capture

    def _warmup_step(self, x, y):
        self.events.append(("warmup", y.shape[0]))
        train_step(self.model, self.optimizer, x, y, self.acc)

    def _capture(self, x, y):
        lr = self.optimizer.param_groups[0]["lr"]
        self.events.append(("capture", y.shape[0], lr))
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        sx, sy = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)
        self.pool = self.pool or "pool"
        return (
            FakeGraph(
                lambda: train_step(self.model, self.optimizer, sx, sy, self.acc), lr, self.optimizer
            ),
            sx,
            sy,
        )


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(8),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def run_epochs(make, epochs=4, n=28, bs=8, lrs=(0.1, 0.1, 0.01, 0.01)):
    """Train like train.py does (full batches, then a partial one); return the step."""
    model = tiny_model()
    opt = make_optimizer("sgd", model.parameters(), 0.1)
    acc = Accumulator(torch.device("cpu"))
    step = make(model, opt, acc)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    for epoch in range(epochs):
        step.set_lr(lrs[epoch])
        for i in range(0, n, bs):
            step(x[i : i + bs], y[i : i + bs])
    return step


def same_state(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return (
        all(torch.equal(sa[k], sb[k]) for k in sa)
        and torch.equal(a.acc.loss_sum, b.acc.loss_sum)
        and a.acc.count == b.acc.count
    )


def test_graph_step_trains_every_batch_once_and_recaptures_on_lr_change():
    ref = run_epochs(lambda m, o, a: EagerStep(m, o, a))
    logs = []
    fake = run_epochs(lambda m, o, a: CpuGraphStep(m, o, a, warmup=1, log=logs.append))
    assert same_state(ref, fake)
    assert fake.mode == "cuda-graph" and not logs
    captures = [e for e in fake.events if e[0] == "capture"]
    # Full batch: captured after its warmup step and once more at the lr drop. The partial
    # batch (4 images) is warmed up in epoch 1, captured in epoch 2, recaptured at the drop.
    assert captures == [
        ("capture", 8, 0.1),
        ("capture", 4, 0.1),
        ("capture", 8, 0.01),
        ("capture", 4, 0.01),
    ]
    assert fake.events[:4] == [
        ("warmup", 8),
        ("capture", 8, 0.1),
        ("warmup", 4),
        ("capture", 4, 0.1),
    ]


def test_lr_change_keeps_old_graphs_until_the_new_capture_joins_the_pool():
    step = run_epochs(lambda m, o, a: CpuGraphStep(m, o, a, warmup=1), epochs=2)
    old = dict(step.graphs)
    step.set_lr(0.01)
    assert step.graphs == {} and len(step.retired) == len(old)
    step(torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,)))
    assert step.retired == [] and set(step.graphs) == {8}


def test_failed_capture_falls_back_loudly_and_computes_the_same():
    ref = run_epochs(lambda m, o, a: EagerStep(m, o, a))
    logs = []
    fake = run_epochs(
        lambda m, o, a: CpuGraphStep(m, o, a, warmup=1, log=logs.append, fail_capture=True)
    )
    assert same_state(ref, fake)
    assert fake.mode == "eager-nosync"
    assert "capture failed" in fake.fallback_reason and "stream is capturing" in logs[0]
    assert len([e for e in fake.events if e[0] == "capture"]) == 1  # never retried


def test_make_step_on_cpu_says_why_not_graph():
    model = tiny_model()
    step, why = make_step(
        model,
        make_optimizer("sgd", model.parameters(), 0.1),
        Accumulator(torch.device("cpu")),
        torch.device("cpu"),
        True,
        "sgd",
    )
    assert step.mode == "eager-nosync" and "CUDA device" in why


def test_efficient_mode_computes_exactly_the_normal_step():
    """Checkpointed bottlenecks: same grads, same BN running statistics (the recomputation
    must not update them a second time), with and without dropout."""
    for dropout in (0.0, 0.2):
        torch.manual_seed(0)
        normal = build_model("densenet-bc40-k12", dropout=dropout)
        eff = build_model("densenet-bc40-k12", dropout=dropout, efficient=True)
        eff.load_state_dict(normal.state_dict())
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
        runs = []
        for m in (normal, eff):
            torch.manual_seed(1)  # same dropout masks
            with bottleneck_runs(m) as counts:
                nn.functional.cross_entropy(m(x), y).backward()
            runs.append(counts)
        # The equalities below hold trivially if checkpointing is off; the recomputation shows
        # it was on: every bottleneck ran again in backward, and only in efficient mode.
        assert len(runs[0]) == 18  # 3 blocks of 6 bottleneck layers
        assert set(runs[0].values()) == {1} and runs[1] == dict.fromkeys(runs[0], 2), runs
        for (k, a), b in zip(normal.state_dict().items(), eff.state_dict().values()):
            assert torch.equal(a, b), k
        for (k, a), b in zip(normal.named_parameters(), eff.parameters()):
            assert torch.equal(a.grad, b.grad), k
