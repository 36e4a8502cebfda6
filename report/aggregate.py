"""Tidy tables from a study's directories: runs (one row per cell), curves (one row per cell x
epoch), envs (one row per gradient-stage environment) and layers (one row per env x layer).

Every expected cell gets a row whatever state it is in (completed, diverged, failed, skipped,
running, missing, corrupt), so the page can say what is not there. A corrupt file makes the
cell `corrupt` with the file named in `reason`; its numbers are never used.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from report import gradients, readers, references
from report.study import PARAM_KEYS, Study

STATUSES = ("completed", "diverged", "failed", "skipped", "running", "missing", "corrupt")
RESULT_COLUMNS = [
    "epochs_planned",
    "epochs_done",
    "final_test_err",
    "best_test_err",
    "last_test_err",
    "final_train_loss",
    "wall_s",
    "epoch_s_median",
    "img_per_s",
    "peak_mem_mb",
    "gpu_hours",
    "step_mode",
    "conv_kernels",
]
# The recipe a cell trained with (summary.json config, resolved by densenet/recipe.py; n_train
# and n_test None = the full set; empty = not recorded): a published comparison requires the
# named recipe's values (report/references.py RECIPES).
CONFIG_COLUMNS = ["recipe", *references.RECIPE_KEYS]
# What identifies the software and hardware a cell ran on (the report's environments table).
IDENTITY_COLUMNS = [
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "gpu",
    "gpu_capability",
    "driver",
    "image_tag",
    "image_digest",
    "host",
]
ENV_COLUMNS = IDENTITY_COLUMNS + [
    "git_sha",
    "python_version",
    "actual_cudnn_enabled",
    "actual_cudnn_benchmark",
    "actual_cudnn_deterministic",
    "actual_tf32",
    "actual_deterministic_algorithms",
    "not_applicable",
    "dataset_identity",
    "dataset_name",
    "dataset_checksum",
]
RUN_COLUMNS = (
    ["cell_id", "status", "reason", "corrupt_file", "in_manifest"]
    + list(PARAM_KEYS)
    + ["env_id", "gradcheck_verdict", "gradcheck_max_rel_err"]
    + RESULT_COLUMNS
    + CONFIG_COLUMNS
    + ["recipe_overrides"]
    + ENV_COLUMNS
    + ["rerun", "files", "path"]
)
CURVE_KEYS = ["cell_id", "status"] + list(PARAM_KEYS) + ["torch_version"]
CURVE_COLUMNS = CURVE_KEYS + readers.METRIC_COLUMNS


class Tables(object):
    """The aggregate of one study: four DataFrames with fixed columns (even when empty)."""

    def __init__(
        self, runs: pd.DataFrame, curves: pd.DataFrame, envs: pd.DataFrame, layers: pd.DataFrame
    ) -> None:
        self.runs, self.curves, self.envs, self.layers = runs, curves, envs, layers


def aggregate(study: Study) -> Tables:
    """Read every cell and env directory of the study once and build the tables."""
    env_rows, layer_rows = [], []
    for entry in study.envs:
        row, layers = gradients.env_row(entry, readers.read_dir(entry["path"]))
        env_rows.append(row)
        layer_rows.extend(layers)
    envs = pd.DataFrame(env_rows, columns=gradients.ENVS_COLUMNS)
    run_rows, curve_frames = [], []
    for entry in study.cells:
        files = readers.read_dir(entry["path"])
        row = run_row(entry, files, envs)
        run_rows.append(row)
        if files.metrics is not None and row["status"] != "corrupt" and len(files.metrics):
            curve = files.metrics.copy()
            for key in reversed(CURVE_KEYS):
                curve.insert(0, key, row[key])
            curve_frames.append(curve)
    runs = pd.DataFrame(run_rows, columns=RUN_COLUMNS)
    curves = (
        pd.concat(curve_frames, ignore_index=True)[CURVE_COLUMNS]
        if curve_frames
        else pd.DataFrame(columns=CURVE_COLUMNS)
    )
    return Tables(runs, curves, envs, pd.DataFrame(layer_rows, columns=gradients.LAYER_COLUMNS))


def classify(files: readers.CellFiles) -> tuple[str, Any, str | None]:
    """(status, reason, corrupt_file) of a cell directory, per docs/contracts.md."""
    summary, failure = files.summary, files.failure
    if "summary.json" in files.problems:
        return "corrupt", files.problems["summary.json"], "summary.json"
    if summary is not None:
        status = summary["status"]
        if status in ("completed", "diverged"):
            for name in ("metrics.csv", "env.json"):
                if name in files.problems:
                    return "corrupt", files.problems[name], name
            if files.metrics is None:
                return (
                    "corrupt",
                    "metrics.csv: absent but summary.json says %s" % status,
                    "metrics.csv",
                )
            done = summary.get("epochs_done")
            if done is not None and done != len(files.metrics):
                return (
                    "corrupt",
                    "metrics.csv: %d rows but summary.json says epochs_done %s"
                    % (len(files.metrics), done),
                    "metrics.csv",
                )
        if status == "failed" and failure is not None:
            return "failed", summary.get("reason") or failure.get("reason"), None
        return status, summary.get("reason"), None
    if "failure.json" in files.problems:
        return "corrupt", files.problems["failure.json"], "failure.json"
    if failure is not None:
        reason = failure.get("reason") or "runner reported a failure"
        if failure.get("exit_code") is not None:
            reason = "%s (exit code %s)" % (reason, failure["exit_code"])
        return "failed", reason, None
    if (
        files.metrics is not None
        or "checkpoint.pt" in files.present
        or "metrics.csv" in files.problems
    ):
        if "metrics.csv" in files.problems:
            return "corrupt", files.problems["metrics.csv"], "metrics.csv"
        return "running", "no summary.json yet: running or interrupted", None
    if files.exists:
        return "missing", "directory exists but holds no results", None
    return "missing", "no cell directory", None


def run_row(entry: dict[str, Any], files: readers.CellFiles, envs: pd.DataFrame) -> dict[str, Any]:
    """One row of runs.csv for a cell entry (see RUN_COLUMNS)."""
    status, reason, corrupt_file = classify(files)
    row = dict.fromkeys(RUN_COLUMNS)
    usable = status != "corrupt"
    summary = (files.summary or {}) if usable else {}
    env = (files.env or {}) if usable else {}
    config = dict(env.get("config") or {})
    config.update(summary.get("config") or {})
    row.update(
        {
            "cell_id": entry["id"],
            "status": status,
            "reason": reason,
            "corrupt_file": corrupt_file,
            "in_manifest": entry["in_manifest"],
            "env_id": entry.get("env"),
            "rerun": entry.get("rerun"),
            "path": files.path,
            "files": ";".join(files.present),
        }
    )
    row.update(env_identity(env, summary))
    for key in PARAM_KEYS:
        value = entry["params"].get(key)
        if value is None and config.get(key) is not None:
            value = str(config[key])
        row[key] = value
    if row["torch"] is None:
        row["torch"] = row["torch_version"] or "unknown"
    row.update(results(summary, files.metrics if usable else None, config, row["gpu"]))
    row.update({key: config.get(key) for key in CONFIG_COLUMNS})
    if row["recipe"] is None:  # a cell without a config yet: the study's axis value
        row["recipe"] = entry["params"].get("recipe")
    row["recipe_overrides"] = references.override_keys(row) or None
    row.update(gradients.env_verdict(row, envs))
    return row


def step_text(summary: dict[str, Any]) -> str | None:
    """The step a cell ended with, "+overlap" where its weight gradients ran on a side stream
    (summary.json weight_grad_stream, densenet/overlap.py)."""
    mode = summary.get("step_mode")
    return mode + "+overlap" if mode and summary.get("weight_grad_stream") else mode


def results(
    summary: dict[str, Any], metrics: pd.DataFrame | None, config: dict[str, Any], gpu: Any
) -> dict[str, Any]:
    """Result columns from summary.json and metrics.csv; NaN where a cell has not got them."""
    out: dict[str, Any] = {
        "epochs_planned": config.get("epochs"),
        "step_mode": step_text(summary),
        "conv_kernels": kernels_text(summary.get("conv_kernels")),
    }
    for key in (
        "final_test_err",
        "best_test_err",
        "epochs_done",
        "wall_s",
        "img_per_s",
        "peak_mem_mb",
    ):
        out[key] = summary.get(key)
    if metrics is not None and len(metrics):
        last = metrics.iloc[-1]
        out["last_test_err"] = float(last["test_err"])
        out["final_train_loss"] = float(last["train_loss"])
        out["epoch_s_median"] = float(metrics["epoch_s"].median())
        if out["epochs_done"] is None:
            out["epochs_done"] = int(len(metrics))
        if out["img_per_s"] is None:
            out["img_per_s"] = float(metrics["img_per_s"].median())
    # GPU-hours only where a GPU ran the cell; CPU cells are shown with their wall time.
    if gpu and out["wall_s"] is not None:
        out["gpu_hours"] = out["wall_s"] / 3600.0
    return out


def kernel_name(name: str) -> str:
    """A short name of a convolution kernel that keeps its algorithm and arithmetic:
    "void wgrad_alg0_engine<float, 128, ...>(int, ...)" -> "wgrad_alg0_engine";
    "sm80_xmma_dgrad_implicit_gemm_f32f32_..._nchw_tilesize32x32x8_..._ffma_..." ->
    "sm80_xmma_dgrad_implicit_gemm_f32f32_..._nchw ffma" (FP32 FMA; a TF32 kernel names
    tf32 in its head already)."""
    name = name[5:] if name.startswith("void ") else name
    base = name.split("<")[0].split("(")[0]
    head, sep, tail = base.partition("_tilesize")
    kind = next((k for k in ("tf32", "ffma", "hmma", "bf16", "f16") if k in tail), "")
    return head + (" " + kind if kind and kind not in head else "")


def kernels_text(record: Any, top: int = 3) -> str | None:
    """The top convolution kernels of a cell's summary.json `conv_kernels`, by time, short
    names joined by "; " (None where the cell has no record)."""
    if not isinstance(record, dict) or not record.get("kernels"):
        return None
    names = []
    for row in record["kernels"]:
        short = kernel_name(str(row.get("name")))
        if short not in names:
            names.append(short)
    return "; ".join(names[:top])


def env_identity(env: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Versions, GPU, image, flags and dataset identity from env.json (see ENV_COLUMNS)."""
    environ, flags, dataset = (env.get(k) or {} for k in ("environ", "flags", "dataset"))
    gpu, image = environ.get("gpu") or {}, environ.get("image") or {}
    return {
        "torch_version": environ.get("torch"),
        "cuda_version": environ.get("cuda"),
        "cudnn_version": _str(environ.get("cudnn")),
        "gpu": gpu.get("name"),
        "gpu_capability": gpu.get("capability"),
        "driver": gpu.get("driver"),
        "host": environ.get("host"),
        "image_tag": image.get("tag"),
        "image_digest": image.get("digest"),
        "git_sha": environ.get("git_sha"),
        "python_version": environ.get("python"),
        "actual_cudnn_enabled": flags.get("cudnn_enabled"),
        "actual_cudnn_benchmark": flags.get("cudnn_benchmark"),
        "actual_cudnn_deterministic": flags.get("cudnn_deterministic"),
        "actual_tf32": flags.get("tf32_effective"),
        "actual_deterministic_algorithms": flags.get("deterministic_algorithms"),
        # On CPU the cuDNN and TF32 axes are recorded as not applicable (DESIGN "Numerics").
        "not_applicable": "; ".join(
            "%s: %s" % kv for kv in sorted((flags.get("applicability") or {}).items())
        )
        or None,
        "dataset_identity": summary.get("dataset_identity") or dataset.get("identity"),
        "dataset_name": dataset.get("name"),
        "dataset_checksum": first_hash(dataset.get("checksums")),
    }


def first_hash(obj: Any) -> str | None:
    """The first checksum string in a nested checksums object (short, for identification)."""
    if isinstance(obj, dict):
        for key in sorted(obj):
            value = obj[key]
            if key in ("sha256", "md5") and isinstance(value, str):
                return "%s:%s" % (key, value[:12])
            found = first_hash(value)
            if found:
                return found
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def write_tables(tables: Tables, out_dir: str) -> list[str]:
    """runs.csv, curves.csv, envs.csv and layers.csv in out_dir, each written atomically."""
    from report import atomic

    names = {
        "runs.csv": tables.runs,
        "curves.csv": tables.curves,
        "envs.csv": tables.envs,
        "layers.csv": tables.layers,
    }
    for name, frame in names.items():
        atomic.write_frame(os.path.join(out_dir, name), frame)
    return sorted(names)
