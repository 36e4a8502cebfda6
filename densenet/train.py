"""The trainer: one cell of the study, start to finish, resumable after a kill.

run() reads top to bottom in the order of execution: open the cell directory, preflight the
device, set the numerics flags (before any CUDA work), load the data, decide what the cell's
checkpoint means and make the first write, build model and optimizer (resumed from a verified
checkpoint if one matches), put the data on the device and build the step, then per epoch:
train, evaluate (outside the timed region), write checkpoint and metrics atomically, print one
line; last the summary. The recipe (hyperparameters) is densenet/recipe.py; the cell
directory and its resume rules are densenet/celldir.py.

Reproducibility at epoch granularity: the shuffle, the augmentation draws and dropout are
seeded from (seed, epoch) at the start of every epoch, so an epoch computes the same thing
whether the run started at epoch 1 or resumed from a checkpoint; a resumed CPU run matches an
uninterrupted one bit for bit.
"""

import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import atomic, checkpoint, compiled, data, envinfo, hostmem, kernels, numerics
from .augment import Normalizer
from .celldir import (
    Cell,
    Resume,
    begin,
    inspect_checkpoint,
    resume_key,
    step_record,
    summary,
)
from .device import peak_mem_mb, preflight
from .feed import epoch_batches, stream_batches, stream_iterations
from .models import build_model
from .outcome import EXIT_DIVERGED, EXIT_OK, EXIT_SKIPPED, Skip, note
from .overlap import wanted as overlap_wanted
from .recipe import (
    batches_stream,
    default_eval_batch,
    eval_batch_mean,
    lr_at,
    make_optimizer,
    normalization,
)
from .steps import Accumulator, evaluate, make_step
from .syncs import HostSyncCounter

__all__ = ["run", "epoch_seed", "fit_sizes"]

Row = Dict[str, Any]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle, augmentation and dropout."""
    return seed * 1000003 + epoch


def run(cfg: Dict[str, Any], log: Callable[..., None] = print, cell: Optional[Cell] = None) -> int:
    """Train one cell into cfg["out"] (`cell`, a Cell of it, tells the caller whether the run
    began); returns the exit code (EXIT_*)."""
    # The cell directory: one job writes it at a time.
    cell = cell or Cell(cfg["out"])
    open_cell(cell)

    # Device preflight: a device or --compile on that cannot run here skips the cell.
    try:
        device = preflight(cfg["device"], cfg.get("compile") == "on")
    except Skip as exc:
        atomic.write_json(cell.summary, summary("skipped", cfg, [], 0.0, None, reason=str(exc)))
        note("skipped: %s" % exc)
        return EXIT_SKIPPED

    # Numerics flags, before any CUDA work.
    flags = set_numerics(cfg, device)

    # Data (on the host).
    ds = load_data(cfg)

    # The checkpoint decision (it may refuse: nothing of the cell is rewritten yet), then the
    # run's first write.
    resume = inspect_checkpoint(cell, cfg)
    env = {
        "environ": envinfo.environ(cfg.get("image_ref")),
        "flags": flags,
        "dataset": ds.info(),
        "config": cfg,
    }
    begin(cell, resume, env)

    # Model and optimizer, resumed where the checkpoint matches.
    model = build_model(
        cfg["model"],
        ds.num_classes,
        stem=cfg["stem"],
        dropout=cfg["dropout"],
        bias=cfg["bias"] == "on",
        canary=cfg["canary"] == "noncontig-grad",
        efficient=cfg["efficient"] == "on",
        init=cfg["init"],
        bn_eps=cfg["bn_eps"],
    ).to(device)
    optimizer = make_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"], cfg)
    rows, wall_s, start = restore(cell, resume, model, optimizer)

    # Data on the device, and the training step.
    x_train, y_train = ds.x_train.to(device), ds.y_train.to(device)
    x_test, y_test = ds.x_test.to(device), ds.y_test.to(device)
    normalize = Normalizer(*normalization(cfg["norm"], ds.name, (ds.mean, ds.std)), device)
    acc = Accumulator(device)
    step, why = training_step(cfg, model, optimizer, acc, device)
    n = y_train.shape[0]
    # Host syncs torch reports inside each epoch's training loop (CUDA only; see syncs.py):
    # the eager step makes one per step, the fast step none once its graphs are captured.
    host_syncs: List[int] = []
    extra = {
        "dataset_identity": ds.identity,
        "host_syncs_per_epoch": host_syncs,
        "weight_grad_stream": step.overlap,
    }
    session_t0 = time.perf_counter()

    # The epochs.
    for epoch in range(start + 1, cfg["epochs"] + 1):
        lr = lr_at(epoch, cfg["epochs"], cfg["lr"], cfg["lr_schedule"])
        train_loss, train_err, epoch_s, syncs = train_epoch(
            cfg, epoch, lr, step, acc, x_train, y_train, normalize, device
        )
        host_syncs.append(syncs)
        t1 = time.perf_counter()
        test_loss, test_err = evaluate(
            model,
            x_test,
            y_test,
            normalize,
            cfg["eval_batch_size"],
            eval_batch_mean(cfg.get("recipe")),
        )
        wall_s += epoch_s + (time.perf_counter() - t1)
        rows.append(
            {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_err": train_err,
                "test_loss": test_loss,
                "test_err": test_err,
                "epoch_s": epoch_s,
                "img_per_s": epoch_images(cfg, epoch, n) / epoch_s,
            }
        )
        if not all(math.isfinite(v) for v in (train_loss, test_loss)):
            record_divergence(cell, cfg, rows, wall_s, device, step_record(step, why, extra))
            return EXIT_DIVERGED
        save_epoch(cell, cfg, epoch, model, optimizer, rows, wall_s)
        eta = (cfg["epochs"] - epoch) * (time.perf_counter() - session_t0) / (epoch - start)
        log(progress_line(cfg["epochs"], rows[-1], eta), flush=True)

    # The summary: training's peak memory, before the kernel census adds its own.
    extra["peak_mem_mb"] = peak_mem_mb(device)
    extra["conv_kernels"] = kernel_census(model, cfg, x_train, y_train, normalize, device)
    atomic.write_json(
        cell.summary,
        summary("completed", cfg, rows, wall_s, device, extra=step_record(step, why, extra)),
    )
    if cfg["keep_checkpoint"] != "on" and os.path.exists(cell.checkpoint):
        os.remove(cell.checkpoint)
    return EXIT_OK


def open_cell(cell: Cell) -> None:
    """Create the cell directory. One job writes a cell at a time: temp files left by a killed
    predecessor are garbage."""
    os.makedirs(cell.out, exist_ok=True)
    stale = atomic.remove_stale_temps(cell.out)
    if stale:
        note("removed %d temporary file(s) left by an interrupted run" % len(stale))


def set_numerics(cfg: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """Numerics flags and --cpu-malloc as configured (env.json's `flags`); fills the device's
    default eval batch into cfg."""
    flags = numerics.configure(cfg["cudnn"], cfg["tf32"], cfg["deterministic"], cfg["seed"])
    flags["applicability"] = numerics.applicability(device)
    flags["cpu_malloc"] = hostmem.configure(cfg.get("cpu_malloc", "reuse"), device)
    if not cfg.get("eval_batch_size"):
        cfg["eval_batch_size"] = default_eval_batch(device, cfg["batch_size"], cfg.get("recipe"))
    return flags


def load_data(cfg: Dict[str, Any]) -> data.Dataset:
    """The cell's dataset, its sizes fitted into cfg; a warning for data that is neither the
    official release nor the generated set."""
    ds = data.load(
        cfg["dataset"],
        cfg.get("data_dir"),
        cfg["n_train"],
        cfg["n_test"],
        allow_download=cfg.get("download") == "on",
        require="official" if cfg.get("require_official") == "on" else None,
    )
    fit_sizes(cfg, ds)
    if ds.identity not in ("official", "synthetic"):
        note(
            "warning: dataset identity is %s: results are not comparable with published numbers"
            % ds.identity
        )
    return ds


def fit_sizes(cfg: Dict[str, Any], ds: data.Dataset) -> None:
    """--n-train/--n-test above the split's size use the whole split: say so, and record the
    count used (as env.json's dataset record does), not the one asked for."""
    for key, split, y in (("n_train", "training", ds.y_train), ("n_test", "test", ds.y_test)):
        have = int(y.numel())
        if cfg.get(key) is not None and cfg[key] > have:
            note(
                "note: --%s %d is more than the %d %s images of %s; using all %d"
                % (key.replace("_", "-"), cfg[key], have, split, ds.name, have)
            )
            cfg[key] = have


def restore(
    cell: Cell, resume: Resume, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Tuple[List[Row], float, int]:
    """(rows, wall_s, epochs done): from the checkpoint being resumed, else a fresh start."""
    state = resume.state
    if state is None:
        return [], 0.0, 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    cell.write_metrics(state["rows"])  # metrics.csv may lag the checkpoint after a kill
    note("resuming from %s at epoch %d" % (cell.checkpoint, state["epoch"] + 1))
    return state["rows"], state["wall_s"], state["epoch"]


def training_step(
    cfg: Dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    acc: Accumulator,
    device: torch.device,
) -> Tuple[Any, Optional[str]]:
    """(step, why the fast path is not used or None), as --fast, --compile, --overlap say."""
    # The step trains through the compiled callable; it shares the model's parameters and
    # buffers, and evaluation and checkpoints use the plain model.
    fn = compiled.compile_model(model) if cfg.get("compile") == "on" else model
    # The weight-gradient stream installs into the plain model's convolutions.
    overlap = overlap_wanted(cfg.get("overlap", "on"), cfg.get("compile") == "on")
    step, why = make_step(
        fn, optimizer, acc, device, cfg["fast"] == "on", cfg["optimizer"], log=note, overlap=overlap
    )
    if why:
        note("fast path: %s; using %s" % (why, step.mode))
    return step, why


def train_epoch(
    cfg: Dict[str, Any],
    epoch: int,
    lr: float,
    step: Any,
    acc: Accumulator,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    normalize: Normalizer,
    device: torch.device,
) -> Tuple[float, float, float, int]:
    """One timed epoch of training: (train loss, train err, seconds, host syncs). The epoch's
    generator (seeded by epoch_seed) draws its permutation, then its augmentation; where
    batches stream (recipe.STREAM_BATCHES), the next epoch's permutation is recomputed from
    its own seed, so a resumed epoch continues bit for bit."""
    step.set_lr(lr)
    numerics.seed_everything(epoch_seed(cfg["seed"], epoch))
    gen = torch.Generator(device=device)
    gen.manual_seed(epoch_seed(cfg["seed"], epoch))
    acc.reset()
    aug = cfg["augment"] == "on"
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if batches_stream(cfg.get("recipe")):
        nxt = torch.Generator(device=device)
        nxt.manual_seed(epoch_seed(cfg["seed"], epoch + 1))
        batches = stream_batches(
            x_train,
            y_train,
            cfg["batch_size"],
            normalize,
            gen,
            aug,
            cfg["augment_order"],
            epoch,
            nxt,
        )
    else:
        batches = epoch_batches(
            x_train, y_train, cfg["batch_size"], normalize, gen, aug, cfg["augment_order"]
        )
    with HostSyncCounter(device) as syncs:
        for xb, yb in batches:
            step(xb, yb)
    train_loss, train_err = acc.read()  # syncs: the timed region ends on finished work
    return train_loss, train_err, time.perf_counter() - t0, syncs.count


def epoch_images(cfg: Dict[str, Any], epoch: int, n: int) -> int:
    """The images epoch `epoch` trains on: `n`, or its full batches where batches stream."""
    if not batches_stream(cfg.get("recipe")):
        return n
    first, last = stream_iterations(epoch, n, cfg["batch_size"])
    return (last - first) * cfg["batch_size"]


def record_divergence(
    cell: Cell,
    cfg: Dict[str, Any],
    rows: List[Row],
    wall_s: float,
    device: torch.device,
    extra: Dict[str, Any],
) -> None:
    """A non-finite loss ends the cell `diverged`, its rows kept."""
    last = rows[-1]
    cell.write_metrics(rows)
    atomic.write_json(
        cell.summary,
        summary(
            "diverged",
            cfg,
            rows,
            wall_s,
            device,
            extra=extra,
            reason="non-finite loss in epoch %d (train %s, test %s)"
            % (last["epoch"], last["train_loss"], last["test_loss"]),
        ),
    )
    note("diverged: non-finite loss in epoch %d" % last["epoch"])


def save_epoch(
    cell: Cell,
    cfg: Dict[str, Any],
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: List[Row],
    wall_s: float,
) -> None:
    """Checkpoint first: it carries the rows, so metrics.csv can always be rebuilt from it."""
    checkpoint.save(
        cell.checkpoint,
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rows": rows,
            "wall_s": wall_s,
            "config": resume_key(cfg),
            "epoch_seed": epoch_seed(cfg["seed"], epoch),
        },
    )
    cell.write_metrics(rows)


def progress_line(epochs: int, row: Row, eta: float) -> str:
    """The one stdout line per epoch."""
    return (
        "epoch %d/%d lr %g | train loss %.4f err %.2f%% | test loss %.4f err %.2f%% | "
        "%.0f img/s | ETA %s"
        % (
            row["epoch"],
            epochs,
            row["lr"],
            row["train_loss"],
            row["train_err"],
            row["test_loss"],
            row["test_err"],
            row["img_per_s"],
            fmt_eta(eta),
        )
    )


def kernel_census(
    model: torch.nn.Module,
    cfg: Dict[str, Any],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    normalize: Normalizer,
    device: torch.device,
) -> Dict[str, Any]:
    """summary.json `conv_kernels`: the convolution kernels of the training step (cuDNN's
    algorithm choice, densenet/kernels.py), on one full training batch. A failure here is
    recorded, never the cell's failure."""
    bs = cfg["batch_size"]
    wrap = compiled.compile_model if cfg.get("compile") == "on" else None
    try:
        return kernels.conv_kernels(model, normalize(x_train[:bs]), y_train[:bs], device, wrap=wrap)
    except Exception as exc:  # e.g. out of memory for the copy's activations
        return {"reason": "profiling failed: %s: %s" % (type(exc).__name__, exc)}


def fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)
