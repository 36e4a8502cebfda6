"""The cell directory and its resume rules: paths (the contract with report/, see DESIGN.md),
the resume key and which options stay out of it, what a checkpoint found there means for this
run (resume, or move it aside as corrupt or stale), the first write that makes the directory
this run's, and the summary.json records."""

import os
from typing import Any, Dict, List, Mapping, Optional

import torch

from . import atomic, checkpoint
from .device import peak_mem_mb
from .outcome import note

__all__ = [
    "METRIC_COLUMNS",
    "TIMING_COLUMNS",
    "RESUME_NEUTRAL",
    "STALE_CHECKPOINT",
    "LATER_OPTIONS",
    "resume_key",
    "config_diff",
    "Cell",
    "Resume",
    "inspect_checkpoint",
    "begin",
    "record_failure",
    "summary",
    "step_record",
]

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


def resume_key(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The part of the config a checkpoint must match to be resumed."""
    return {
        k: v
        for k, v in cfg.items()
        if k not in RESUME_NEUTRAL and LATER_OPTIONS.get(k, object()) != v
    }


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`key: old vs new` for each resume-key difference; left-out LATER_OPTIONS keys show as
    their "as before" value."""
    old, new = dict(LATER_OPTIONS, **old), dict(LATER_OPTIONS, **new)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join("%s: %r vs %r" % (k, old.get(k), new.get(k)) for k in diff)


class Cell(object):
    """Paths of one cell directory (the contract with report/, see DESIGN.md)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.began = False  # set once this run starts replacing the directory's files
        for name in ("metrics.csv", "summary.json", "env.json", "checkpoint.pt"):
            setattr(self, name.split(".")[0], os.path.join(out, name))

    def holds_results(self) -> bool:
        """Whether another run's files are here: its result, its curve or its checkpoint."""
        return any(os.path.exists(p) for p in (self.summary, self.metrics, self.checkpoint))

    def write_metrics(self, rows: List[Dict[str, Any]]) -> None:
        atomic.write_csv(
            self.metrics, METRIC_COLUMNS, [{k: r[k] for k in METRIC_COLUMNS} for r in rows]
        )


class Resume(object):
    """What the cell's checkpoint means for this run. Decided before anything is written and
    carried out by begin(), so a run refused here leaves the directory as it was."""

    def __init__(
        self, state: Optional[dict] = None, aside: Optional[str] = None, why: Optional[str] = None
    ) -> None:
        self.state = state  # the state to resume from, or None
        self.aside = aside  # suffix the checkpoint is moved aside with (.corrupt, .stale)
        self.why = why  # one line: why it is moved aside


def inspect_checkpoint(cell: Cell, cfg: Mapping[str, Any]) -> Resume:
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


def begin(cell: Cell, resume: Resume, env: Mapping[str, Any]) -> None:
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


def record_failure(cell: Cell, cfg: Mapping[str, Any], reason: str) -> None:
    """summary.json `failed` for a run that raised. A run refused before it began leaves
    another run's files as they were: a `failed` summary would replace that run's result, or
    mark its resumable checkpoint failed, for a run that never started."""
    if not cell.began and cell.holds_results():
        return
    try:
        atomic.write_json(cell.summary, summary("failed", cfg, [], None, None, reason=reason))
    except OSError:
        pass


def summary(
    status: str,
    cfg: Mapping[str, Any],
    rows: List[Dict[str, Any]],
    wall_s: Optional[float],
    device: Optional[torch.device],
    reason: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The summary.json record of a run that ended with `status`."""
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


def step_record(step: Any, why: Optional[str], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """summary.json fields of the step: the mode in effect at the end (a failed CUDA-graph
    capture switches to eager-nosync mid-run) and why the fast path was not used, if so."""
    out = dict(extra)
    out["step_mode"] = step.mode
    out["step_fallback"] = getattr(step, "fallback_reason", None) or why
    return out
