"""The trainer: one cell of the study, start to finish, resumable after a kill.

Sections follow the order of execution: resolve the config, preflight the device, set the
numerics flags (before any CUDA work), load the data onto the device, build model and
optimizer, resume from a verified checkpoint if one matches, then per epoch: train, evaluate
(outside the timed region), write checkpoint and metrics atomically, print one line.

Reproducibility at epoch granularity: the shuffle, the augmentation draws and dropout are
seeded from (seed, epoch) at the start of every epoch, so an epoch computes the same thing
whether the run started at epoch 1 or resumed from a checkpoint; a resumed CPU run matches an
uninterrupted one bit for bit.
"""

import math
import os
import resource
import sys
import time

import torch

from . import atomic, checkpoint, compiled, data, envinfo, hostmem, kernels, numerics
from .augment import Normalizer
from .feed import epoch_batches
from .models import build_model
from .overlap import wanted as overlap_wanted
from .steps import Accumulator, evaluate, make_step
from .syncs import HostSyncCounter

PROTOCOLS = {
    # name: (epochs, n_train, n_test); batch 64 and lr drops at 50% / 75% for all of them.
    "smoke": (3, 5000, 1000),
    "short": (30, None, None),
    "paper": (300, None, None),
}
OPTIMIZERS = {"sgd": 0.1, "adam": 1e-3, "rmsprop": 1e-4}  # name -> base learning rate
METRIC_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_err",
    "test_loss",
    "test_err",
    "epoch_s",
    "img_per_s",
]
TIMING_COLUMNS = ("epoch_s", "img_per_s")
# Config keys that do not change what is computed, so a checkpoint made under other values
# of them may be resumed (e.g. the data path inside a container differs from the host's).
RESUME_NEUTRAL = (
    "out",
    "data_dir",
    "image_ref",
    "keep_checkpoint",
    "fast",
    "overlap",  # same kernels, same bits: only when the weight gradients run
    "cpu_malloc",  # where freed host memory goes, not what is computed
    "download",
    "stale_checkpoint",  # what to do with another config's checkpoint, not what is computed
)
# --stale-checkpoint: what a checkpoint made under another config gets. By hand it is refused
# (it may be a run the user wants back); in the workflow, whose cell directories hold one
# config at a time, it is obsolete and moved aside.
STALE_CHECKPOINT = ("refuse", "restart")

# Options added after checkpoints were first written, with the value that means "as before":
# at that value they stay out of the resume key, so an older checkpoint still resumes.
LATER_OPTIONS = {"compile": "off"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_SKIPPED = 0, 1, 2, 3, 4


class Skip(Exception):
    """The cell cannot run in this environment (not an error of the harness)."""


def resolve(args):
    """Fill protocol defaults and derived values into a plain config dict."""
    cfg = dict(args)
    epochs, n_train, n_test = PROTOCOLS[cfg["protocol"]]
    for key, default in (
        ("epochs", epochs),
        ("n_train", n_train),
        ("n_test", n_test),
        ("batch_size", 64),
    ):
        if cfg.get(key) is None:
            cfg[key] = default
    if cfg.get("lr") is None:
        cfg["lr"] = OPTIMIZERS[cfg["optimizer"]]
    if cfg.get("dropout") is None:
        # The paper uses dropout 0.2 only without augmentation (C10, C100).
        cfg["dropout"] = 0.0 if cfg["augment"] == "on" else 0.2
    return cfg


def lr_at(epoch, epochs, base):
    """Learning rate for 1-indexed ``epoch``: base, /10 after 50% and /100 after 75% of training
    (paper: epochs 1-150 at 0.1, 151-225 at 0.01, 226-300 at 0.001)."""
    if epoch <= epochs * 0.5:
        return base
    if epoch <= epochs * 0.75:
        return base / 10
    return base / 100


def epoch_seed(seed, epoch):
    return seed * 1000003 + epoch


def make_optimizer(name, params, lr):
    if name == "sgd":
        # Paper recipe: Nesterov momentum 0.9 without dampening, weight decay 1e-4 on all params.
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, dampening=0, weight_decay=1e-4, nesterov=True
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=1e-4)
    raise ValueError("optimizer: expected one of %s, got %r" % (", ".join(OPTIMIZERS), name))


def resolve_device(name):
    """The torch device for --device; Skip when the GPU cannot run this torch build (also
    under auto: quietly training on the CPU instead would be a silent fallback)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        support = envinfo.cuda_arch_support()
        if not support["supported"]:
            raise Skip(support["reason"])
    return torch.device(name)


def default_eval_batch(device, batch_size):
    """--eval-batch-size when not given (the cost probe uses it too). A CPU evaluates fastest
    in small batches: at 500 its activations exceed glibc's mmap limit (fresh pages on every
    call, 3x slower per image) or, with --cpu-malloc reuse, fragment the heap (3x the training
    step's memory)."""
    return 500 if device.type == "cuda" else batch_size


def peak_mem_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # Peak resident set of the process (Linux reports KiB): an upper bound, labelled in env.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resume_key(cfg):
    return {
        k: v
        for k, v in cfg.items()
        if k not in RESUME_NEUTRAL and LATER_OPTIONS.get(k, object()) != v
    }


class Cell(object):
    """Paths of one cell directory (the contract with report/, see DESIGN.md)."""

    def __init__(self, out):
        self.out = out
        self.began = False  # set once this run starts replacing the directory's files
        for name in ("metrics.csv", "summary.json", "env.json", "checkpoint.pt"):
            setattr(self, name.split(".")[0], os.path.join(out, name))

    def holds_results(self):
        """Whether another run's files are here: its result, its curve or its checkpoint."""
        return any(os.path.exists(p) for p in (self.summary, self.metrics, self.checkpoint))

    def write_metrics(self, rows):
        atomic.write_csv(
            self.metrics, METRIC_COLUMNS, [{k: r[k] for k in METRIC_COLUMNS} for r in rows]
        )


class Resume(object):
    """What the cell's checkpoint means for this run. Decided before anything is written and
    carried out by begin(), so a run refused here leaves the directory as it was."""

    def __init__(self, state=None, aside=None, why=None):
        self.state = state  # the state to resume from, or None
        self.aside = aside  # suffix the checkpoint is moved aside with (.corrupt, .stale)
        self.why = why  # one line: why it is moved aside


def inspect_checkpoint(cell, cfg):
    """A Resume for the cell's checkpoint; ValueError for one made under another config
    unless --stale-checkpoint restart."""
    if not os.path.exists(cell.checkpoint):
        return Resume()
    try:
        state = checkpoint.load(cell.checkpoint)
    except checkpoint.CheckpointError as exc:
        return Resume(aside=".corrupt", why=str(exc))
    if not isinstance(state, dict):
        return Resume(aside=".corrupt", why="checkpoint %s holds no state" % cell.checkpoint)
    if state.get("config") == resume_key(cfg):
        return Resume(state=state)
    why = "checkpoint %s was made with a different config (%s)" % (
        cell.checkpoint,
        config_diff(state.get("config") or {}, resume_key(cfg)),
    )
    if cfg.get("stale_checkpoint") != "restart":
        raise ValueError(why + "; remove it, use another --out, or pass --stale-checkpoint restart")
    return Resume(aside=".stale", why=why)


def config_diff(old, new):
    """`key: old vs new` for each resume-key difference; left-out LATER_OPTIONS keys show as
    their "as before" value."""
    old, new = dict(LATER_OPTIONS, **old), dict(LATER_OPTIONS, **new)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join("%s: %r vs %r" % (k, old.get(k), new.get(k)) for k in diff)


def begin(cell, resume, env):
    """This run's first write: from here on the directory is this run's. The summary.json it
    supersedes goes first (a kill from here on leaves the cell `running`, never another run's
    result beside this run's files), then the checkpoint decision is carried out and env.json
    written."""
    cell.began = True
    if os.path.exists(cell.summary):
        os.remove(cell.summary)
    if resume.aside:
        moved = checkpoint.quarantine(cell.checkpoint, resume.aside)
        if resume.aside == ".stale" and os.path.exists(cell.metrics):
            os.remove(cell.metrics)  # the stale checkpoint's rows, not this run's
        note(
            "%s; moved to %s, starting the cell from epoch 1"
            % (resume.why, os.path.basename(moved))
        )
    atomic.write_json(cell.env, env)


def record_failure(cell, cfg, reason):
    """summary.json `failed` for a run that raised. A run refused before it began leaves
    another run's files as they were: a `failed` summary would replace that run's result, or
    mark its resumable checkpoint failed, for a run that never started."""
    if not cell.began and cell.holds_results():
        return
    try:
        atomic.write_json(cell.summary, summary("failed", cfg, [], None, None, reason=reason))
    except OSError:
        pass


def fit_sizes(cfg, ds):
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


def summary(status, cfg, rows, wall_s, device, reason=None, extra=None):
    errs = [r["test_err"] for r in rows if r["test_err"] == r["test_err"]]
    speeds = sorted(r["img_per_s"] for r in rows)
    out = {
        "status": status,
        "reason": reason,
        "final_test_err": rows[-1]["test_err"] if rows else None,
        "best_test_err": min(errs) if errs else None,
        "epochs_done": len(rows),
        "wall_s": wall_s,
        "peak_mem_mb": peak_mem_mb(device) if device is not None else None,
        "img_per_s": speeds[len(speeds) // 2] if speeds else None,  # median epoch
        "config": cfg,
    }
    out.update(extra or {})
    return out


def step_record(step, why, extra):
    """summary.json fields of the step: the mode in effect at the end (a failed CUDA-graph
    capture switches to eager-nosync mid-run) and why the fast path was not used, if so."""
    out = dict(extra)
    out["step_mode"] = step.mode
    out["step_fallback"] = getattr(step, "fallback_reason", None) or why
    return out


def kernel_census(model, cfg, x_train, y_train, normalize, device):
    """summary.json `conv_kernels`: the convolution kernels of the training step (cuDNN's
    algorithm choice, densenet/kernels.py), on one full training batch. A failure here is
    recorded, never the cell's failure."""
    bs = cfg["batch_size"]
    wrap = compiled.compile_model if cfg.get("compile") == "on" else None
    try:
        return kernels.conv_kernels(model, normalize(x_train[:bs]), y_train[:bs], device, wrap=wrap)
    except Exception as exc:  # e.g. out of memory for the copy's activations
        return {"reason": "profiling failed: %s: %s" % (type(exc).__name__, exc)}


def fmt_eta(seconds):
    seconds = int(seconds)
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def note(text):
    """Warnings and state changes go to stderr; stdout carries one progress line per epoch."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run(cfg, log=print, cell=None):
    """Train one cell into cfg["out"] (`cell`, a Cell of it, tells the caller whether the run
    began); returns the exit code (EXIT_*)."""
    cell = cell or Cell(cfg["out"])
    os.makedirs(cell.out, exist_ok=True)
    # One job writes a cell at a time: temp files left by a killed predecessor are garbage.
    stale = atomic.remove_stale_temps(cell.out)
    if stale:
        note("removed %d temporary file(s) left by an interrupted run" % len(stale))
    try:
        device = resolve_device(cfg["device"])
        why_not = compiled.support(device) if cfg.get("compile") == "on" else None
        if why_not:
            raise Skip("--compile on: %s" % why_not)
    except Skip as exc:
        atomic.write_json(cell.summary, summary("skipped", cfg, [], 0.0, None, reason=str(exc)))
        note("skipped: %s" % exc)
        return EXIT_SKIPPED
    flags = numerics.configure(cfg["cudnn"], cfg["tf32"], cfg["deterministic"], cfg["seed"])
    flags["applicability"] = numerics.applicability(device)
    flags["cpu_malloc"] = hostmem.configure(cfg.get("cpu_malloc", "reuse"), device)
    if not cfg.get("eval_batch_size"):
        cfg["eval_batch_size"] = default_eval_batch(device, cfg["batch_size"])

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
    resume = inspect_checkpoint(cell, cfg)  # may refuse: nothing of the cell is rewritten yet
    env = {
        "environ": envinfo.environ(cfg.get("image_ref")),
        "flags": flags,
        "dataset": ds.info(),
        "config": cfg,
    }
    begin(cell, resume, env)

    model = build_model(
        cfg["model"],
        ds.num_classes,
        stem=cfg["stem"],
        dropout=cfg["dropout"],
        bias=cfg["bias"] == "on",
        canary=cfg["canary"] == "noncontig-grad",
        efficient=cfg["efficient"] == "on",
    ).to(device)
    optimizer = make_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"])
    rows, wall_s, start = [], 0.0, 0
    state = resume.state
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rows, wall_s, start = state["rows"], state["wall_s"], state["epoch"]
        cell.write_metrics(rows)  # metrics.csv may lag the checkpoint after a kill
        note("resuming from %s at epoch %d" % (cell.checkpoint, start + 1))

    x_train, y_train = ds.x_train.to(device), ds.y_train.to(device)
    x_test, y_test = ds.x_test.to(device), ds.y_test.to(device)
    normalize = Normalizer(ds.mean, ds.std, device)
    acc = Accumulator(device)
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
    n, bs = y_train.shape[0], cfg["batch_size"]
    aug, order = cfg["augment"] == "on", cfg["augment_order"]
    # Host syncs torch reports inside each epoch's training loop (CUDA only; see syncs.py):
    # the eager step makes one per step, the fast step none once its graphs are captured.
    host_syncs = []
    extra = {
        "dataset_identity": ds.identity,
        "host_syncs_per_epoch": host_syncs,
        "weight_grad_stream": step.overlap,
    }
    session_t0 = time.perf_counter()

    for epoch in range(start + 1, cfg["epochs"] + 1):
        lr = lr_at(epoch, cfg["epochs"], cfg["lr"])
        step.set_lr(lr)
        numerics.seed_everything(epoch_seed(cfg["seed"], epoch))
        gen = torch.Generator(device=device)
        gen.manual_seed(epoch_seed(cfg["seed"], epoch))
        acc.reset()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with HostSyncCounter(device) as syncs:
            for xb, yb in epoch_batches(x_train, y_train, bs, normalize, gen, aug, order):
                step(xb, yb)
        host_syncs.append(syncs.count)
        train_loss, train_err = acc.read()  # syncs: the timed region ends on finished work
        epoch_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_loss, test_err = evaluate(model, x_test, y_test, normalize, cfg["eval_batch_size"])
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
                "img_per_s": n / epoch_s,
            }
        )
        if not all(math.isfinite(v) for v in (train_loss, test_loss)):
            cell.write_metrics(rows)
            atomic.write_json(
                cell.summary,
                summary(
                    "diverged",
                    cfg,
                    rows,
                    wall_s,
                    device,
                    extra=step_record(step, why, extra),
                    reason="non-finite loss in epoch %d (train %s, test %s)"
                    % (epoch, train_loss, test_loss),
                ),
            )
            note("diverged: non-finite loss in epoch %d" % epoch)
            return EXIT_DIVERGED
        # Checkpoint first: it carries the rows, so metrics.csv can always be rebuilt from it.
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
        eta = (cfg["epochs"] - epoch) * (time.perf_counter() - session_t0) / (epoch - start)
        log(
            "epoch %d/%d lr %g | train loss %.4f err %.2f%% | test loss %.4f err %.2f%% | "
            "%.0f img/s | ETA %s"
            % (
                epoch,
                cfg["epochs"],
                lr,
                train_loss,
                train_err,
                test_loss,
                test_err,
                n / epoch_s,
                fmt_eta(eta),
            ),
            flush=True,
        )

    extra["peak_mem_mb"] = peak_mem_mb(device)  # training's peak, before the census below
    extra["conv_kernels"] = kernel_census(model, cfg, x_train, y_train, normalize, device)
    atomic.write_json(
        cell.summary,
        summary("completed", cfg, rows, wall_s, device, extra=step_record(step, why, extra)),
    )
    if cfg["keep_checkpoint"] != "on" and os.path.exists(cell.checkpoint):
        os.remove(cell.checkpoint)
    return EXIT_OK
