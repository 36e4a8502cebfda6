"""Training steps: the eager reference step and the fast step (a captured CUDA graph).

Both compute the same thing: cross-entropy on one batch, backward, one optimizer step, and
the running loss sum and error count accumulated on the device. The eager step also reads
the running loss back every step, as ordinary training scripts do for logging; the fast
step never syncs inside an epoch and, on CUDA with SGD, replays one captured graph per step.
"""

import sys
from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .overlap import install as install_overlap


class Accumulator(object):
    """Epoch sums kept on the device (float64 loss sum, int64 error count)."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.errors = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0

    def add(self, loss, logits, target):
        self.loss_sum += loss.detach().double() * target.shape[0]
        self.errors += (logits.detach().argmax(1) != target).sum()

    def reset(self):
        self.loss_sum.zero_()
        self.errors.zero_()
        self.count = 0

    def read(self):
        """(mean loss, error %) for the epoch; the one host sync of the epoch."""
        n = max(self.count, 1)
        return float(self.loss_sum.item()) / n, 100.0 * float(self.errors.item()) / n


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    acc: "Accumulator",
) -> torch.Tensor:
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    acc.add(loss, logits, y)
    return loss


class EagerStep(object):
    """The reference loop: one step at a time, with a host sync per step (``sync=True``)."""

    mode = "eager"

    def __init__(self, model, optimizer, acc, sync=True):
        self.model, self.optimizer, self.acc, self.sync = model, optimizer, acc, sync
        if not sync:
            self.mode = "eager-nosync"

    def __call__(self, x, y):
        loss = train_step(self.model, self.optimizer, x, y, self.acc)
        self.acc.count += y.shape[0]
        if self.sync:
            loss.item()

    def set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr


class GraphStep(object):
    """Replays a CUDA graph of the whole step (forward, backward, optimizer, accumulation).

    Follows the whole-network recipe of the PyTorch CUDA-graphs notes, with these choices:

    - Shapes are fixed per graph, so each batch size (the full batch and the epoch's last
      partial batch) gets its own graph, all in one shared memory pool (safe: they are replayed
      one at a time and none reads another's outputs; persistent state lives outside the pool).
    - Each batch size first runs ``warmup`` eager steps on a side stream. They are real training
      steps; they create the momentum buffers, and cuDNN autotuning (benchmark=True) and lazy
      initialisation happen there, never inside a capture, where they would be illegal. The
      partial batch occurs once per epoch, so it is captured in epoch ``warmup + 1``.
    - SGD bakes lr into its kernel arguments (a Python float), so a learning-rate change
      recaptures once (twice per paper run, never per step). The old graphs stay alive until
      the first new capture has joined their pool: a pool whose graphs are all gone may not be
      passed to a new capture (the allocator asserts that its use count is above zero).
    - Dropout inside the graph is fine: replays advance the default CUDA generator's offset.
    - BN running statistics are updated in place on persistent buffers, inside the graph.
    - If a capture fails, the step falls back loudly to the eager no-sync step for the rest of
      the run (``mode`` and ``fallback_reason`` say so) and trains the batch at hand eagerly:
      a failed capture has executed nothing.
    """

    mode = "cuda-graph"

    def __init__(self, model, optimizer, acc, warmup=3, log=None):
        self.model, self.optimizer, self.acc = model, optimizer, acc
        self.warmup = warmup
        self.log = log or _stderr
        self.seen = {}  # batch size -> eager warmup steps done
        self.graphs = {}  # batch size -> (graph, static x, static y)
        self.retired = []  # graphs of the previous lr: keep the shared pool alive until recapture
        self.pool = None
        self.side = None
        self.fallback = None  # the eager step used after a failed capture
        self.fallback_reason = None

    def __call__(self, x, y):
        if self.fallback is not None:
            self.fallback(x, y)
            return
        n = y.shape[0]
        if self.seen.get(n, 0) < self.warmup:
            self._warmup_step(x, y)
            self.seen[n] = self.seen.get(n, 0) + 1
        else:
            if n not in self.graphs:
                try:
                    self.graphs[n] = self._capture(x, y)
                except Exception as exc:  # any capture failure: same algorithm, eagerly
                    self._fall_back(exc)
                    self.fallback(x, y)
                    return
                self.retired = []  # the pool now has a live user again
            graph, sx, sy = self.graphs[n]
            sx.copy_(x)
            sy.copy_(y)
            graph.replay()
        self.acc.count += n

    def _warmup_step(self, x, y):
        if self.side is None:
            self.side = torch.cuda.Stream()
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            train_step(self.model, self.optimizer, x, y, self.acc)
        torch.cuda.current_stream().wait_stream(self.side)

    def _capture(self, x, y):
        """Capture one step for this batch shape; nothing runs now (the caller replays)."""
        sx, sy = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        # Grads are allocated inside the capture, from the graph's pool, as the recipe asks.
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, pool=self.pool):
            train_step(self.model, self.optimizer, sx, sy, self.acc)
        if self.pool is None:
            self.pool = graph.pool()
        return graph, sx, sy

    def _fall_back(self, exc):
        self.graphs, self.retired, self.pool = {}, [], None
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.fallback = EagerStep(self.model, self.optimizer, self.acc, sync=False)
        self.mode = self.fallback.mode
        self.fallback_reason = "CUDA-graph capture failed (%s: %s)" % (
            type(exc).__name__,
            (str(exc).strip().splitlines() or [""])[0],
        )
        self.log(
            "fast path: %s; using %s for the rest of the run" % (self.fallback_reason, self.mode)
        )

    def set_lr(self, lr):
        changed = any(group["lr"] != lr for group in self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if changed and self.graphs:
            self.retired.extend(self.graphs.values())
            self.graphs = {}


def _stderr(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def graph_support(device: torch.device, optimizer_name: str) -> Optional[str]:
    """None if the CUDA-graph step can run here, else why not (one line)."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if optimizer_name != "sgd":
        # Adam/RMSprop would need capturable=True, whose on-device step counter rounds the
        # bias corrections differently from the eager reference: not the same arithmetic.
        return "the CUDA-graph step is implemented for sgd only"
    if not (hasattr(torch.cuda, "CUDAGraph") and hasattr(torch.cuda, "graph")):
        return "this torch has no torch.cuda.graph (added in 1.10)"
    return None


def make_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    acc: "Accumulator",
    device: torch.device,
    fast: bool,
    optimizer_name: str,
    log: Optional[Callable[[str], None]] = None,
    overlap: bool = False,
) -> Tuple[Any, Optional[str]]:
    """The step object for this run; returns (step, why) where why explains a fallback.

    overlap: for the CUDA-graph step, route the convolutions' weight gradients through a side
    stream (densenet/overlap.py; this installs into `model`'s convolutions, which a compiled
    wrapper's modules() reaches too: each then becomes a graph break, which the trainer does
    not use yet). ``step.overlap`` says whether it is in effect."""
    if not fast:
        step, why = EagerStep(model, optimizer, acc, sync=True), None
    else:
        why = graph_support(device, optimizer_name)
        if why is None:
            step = GraphStep(model, optimizer, acc, log=log)
        else:
            step = EagerStep(model, optimizer, acc, sync=False)
    step.overlap = bool(
        overlap and isinstance(step, GraphStep) and install_overlap(model, optimizer, device)
    )
    return step, why


def evaluate(
    model: torch.nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    batch_mean: bool = False,
) -> Tuple[float, float]:
    """(mean loss, error %) on a whole split in eval mode; one host sync at the end.

    Per image by default; with `batch_mean` the unweighted mean of the per-batch mean losses and
    error rates, as Chainer's Evaluator reports them (a short last batch counts as a full one)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    errors = torch.zeros((), dtype=torch.int64, device=y.device)
    err_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    batches = 0
    with torch.no_grad():
        for i in range(0, y.shape[0], batch_size):
            logits = model(normalize(x_uint8[i : i + batch_size]))
            target = y[i : i + batch_size]
            if batch_mean:
                loss_sum += F.cross_entropy(logits, target).double()
                err_sum += (logits.argmax(1) != target).double().mean()
                batches += 1
            else:
                loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
                errors += (logits.argmax(1) != target).sum()
    model.train()
    if batch_mean:
        n = max(batches, 1)
        return float(loss_sum.item()) / n, 100.0 * float(err_sum.item()) / n
    n = max(y.shape[0], 1)
    return float(loss_sum.item()) / n, 100.0 * float(errors.item()) / n
