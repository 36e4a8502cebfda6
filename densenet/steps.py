"""Training steps: the eager reference step and the fast step (a captured CUDA graph).

Both compute the same thing: cross-entropy on one batch, backward, one optimizer step, and
the running loss sum and error count accumulated on the device. The eager step also reads
the running loss back every step, as ordinary training scripts do for logging; the fast
step never syncs inside an epoch and, on CUDA with SGD, replays one captured graph per step.
"""
import torch
import torch.nn.functional as F


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


def train_step(model, optimizer, x, y, acc):
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

    Shapes are fixed per graph, so the full batch and the epoch's last partial batch each get
    one. The first ``warmup`` steps run eagerly on a side stream (they are real training steps:
    they create the momentum buffers and cuDNN workspaces that capture needs). A learning-rate
    change recaptures the graphs once (the optimizer bakes lr into its kernel arguments):
    twice per paper run, never per step.
    """

    mode = "cuda-graph"

    def __init__(self, model, optimizer, acc, warmup=3):
        self.model, self.optimizer, self.acc = model, optimizer, acc
        self.warmup = warmup
        self.steps = 0
        self.graphs = {}  # batch size -> (graph, static x, static y)
        self.pool = None

    def __call__(self, x, y):
        n = y.shape[0]
        if self.steps < self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                train_step(self.model, self.optimizer, x, y, self.acc)
            torch.cuda.current_stream().wait_stream(side)
        else:
            if n not in self.graphs:
                self.graphs[n] = self._capture(x, y)
            graph, sx, sy = self.graphs[n]
            sx.copy_(x)
            sy.copy_(y)
            graph.replay()
        self.steps += 1
        self.acc.count += n

    def _capture(self, x, y):
        sx, sy = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, pool=self.pool):
            # Captured only (nothing runs now); the replay right after performs this step.
            train_step(self.model, self.optimizer, sx, sy, self.acc)
        if self.pool is None:
            self.pool = graph.pool()
        return graph, sx, sy

    def set_lr(self, lr):
        changed = any(group["lr"] != lr for group in self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if changed:
            self.graphs = {}


def make_step(model, optimizer, acc, device, fast, optimizer_name):
    """The step object for this run; returns (step, why) where why explains a fallback."""
    if not fast:
        return EagerStep(model, optimizer, acc, sync=True), None
    if device.type == "cuda" and optimizer_name == "sgd" and hasattr(torch.cuda, "CUDAGraph"):
        return GraphStep(model, optimizer, acc), None
    why = ("CUDA graphs need a CUDA device" if device.type != "cuda"
           else "CUDA-graph step implemented for sgd only")
    return EagerStep(model, optimizer, acc, sync=False), why


def evaluate(model, x_uint8, y, normalize, batch_size):
    """(mean loss, error %) on a whole split in eval mode; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    errors = torch.zeros((), dtype=torch.int64, device=y.device)
    with torch.no_grad():
        for i in range(0, y.shape[0], batch_size):
            logits = model(normalize(x_uint8[i:i + batch_size]))
            target = y[i:i + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
            errors += (logits.argmax(1) != target).sum()
    model.train()
    n = max(y.shape[0], 1)
    return float(loss_sum.item()) / n, 100.0 * float(errors.item()) / n
