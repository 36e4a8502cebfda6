"""Run-to-run determinism: two short trainings from the same seed, compared bit for bit.

Each run re-seeds, builds the model, and takes K steps of the real training step
(steps.train_step: cross-entropy, backward, the optimizer of recipe.make_optimizer) on the same
batch. Non-determinism on CUDA comes from atomics in backward kernels and from cuDNN
autotuning (benchmark mode picks algorithms by timing); on CPU both runs should agree bitwise.
"""

from typing import Any, Callable, Dict, List, Set, Tuple

import torch

from .. import numerics
from ..recipe import base_lr, make_optimizer
from ..steps import Accumulator, train_step

__all__ = ["check_determinism"]


def short_run(
    build: Callable[[], torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: str,
    seed: int,
    steps: int,
) -> Tuple[Dict[str, torch.Tensor], List[float], Set[str]]:
    """K training steps from a fresh seeded model; returns (state on CPU, per-step losses,
    names of the parameters in the state)."""
    numerics.seed_everything(seed)
    model = build().to(x.device).train()
    opt = make_optimizer(optimizer, model.parameters(), base_lr(optimizer))
    acc = Accumulator(x.device)
    losses = []
    for _ in range(steps):
        losses.append(float(train_step(model, opt, x, y, acc).detach()))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return state, losses, {name for name, _ in model.named_parameters()}


def check_determinism(
    build: Callable[[], torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: str = "sgd",
    seed: int = 0,
    steps: int = 3,
    deterministic: str = "off",
) -> Dict[str, Any]:
    """Two seeded K-step runs: bitwise equal or not, and the largest parameter difference.

    `build` returns a freshly initialised model (called after seeding). Parameters and buffers
    (BN running statistics) are compared; "max_abs_diff" is over parameters only, since the
    integer batch counters would make a float maximum meaningless."""
    a, loss_a, params = short_run(build, x, y, optimizer, seed, steps)
    b, loss_b, _ = short_run(build, x, y, optimizer, seed, steps)
    unequal = sorted(k for k in a if not torch.equal(a[k], b[k]))
    diffs = [float((a[k].double() - b[k].double()).abs().max()) for k in a if k in params]
    return {
        "steps": steps,
        "optimizer": optimizer,
        "lr": base_lr(optimizer),
        "batch_size": int(y.shape[0]),
        "deterministic": deterministic,
        "bitwise_equal": not unequal and loss_a == loss_b,
        "unequal_tensors": unequal,
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "losses": [loss_a, loss_b],
    }
