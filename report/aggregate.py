"""Tidy tables from a study's directories: runs (one row per cell), curves (one row per cell x
epoch), envs (one row per gradient-stage environment) and layers (one row per env x layer).

Every expected cell gets a row whatever state it is in (completed, diverged, failed, skipped,
running, missing, corrupt), so the page can say what is not there. A corrupt file makes the
cell `corrupt` with the file named in `reason`; its numbers are never used.
"""

import os

import pandas as pd

from report import readers
from report.study import ENV_PARAM_KEYS, PARAM_KEYS

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
]
ENV_COLUMNS = [
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "gpu",
    "gpu_capability",
    "driver",
    "host",
    "image_tag",
    "image_digest",
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
    + ENV_COLUMNS
    + ["rerun", "files", "path"]
)
CURVE_KEYS = [
    "cell_id",
    "status",
    "model",
    "dataset",
    "augment",
    "optimizer",
    "torch",
    "cudnn",
    "tf32",
    "deterministic",
    "canary",
    "seed",
    "protocol",
    "device",
    "torch_version",
]
CURVE_COLUMNS = CURVE_KEYS + readers.METRIC_COLUMNS
ENVS_COLUMNS = (
    ["env_id", "status", "reason", "in_manifest"]
    + list(ENV_PARAM_KEYS)
    + [
        "verdict",
        "reasons",
        "precision",
        "max_rel_err",
        "median_rel_err",
        "worst_layer",
        "gradcheck",
        "determinism",
        "torch_version",
        "gpu",
        "host",
        "files",
        "path",
    ]
)
LAYER_COLUMNS = ["env_id", "layer_index", "layer", "rel_err_weight", "rel_err_input"]


class Tables(object):
    """The aggregate of one study: four DataFrames with fixed columns (even when empty)."""

    def __init__(self, runs, curves, envs, layers):
        self.runs, self.curves, self.envs, self.layers = runs, curves, envs, layers


def aggregate(study):
    """Read every cell and env directory of the study once and build the tables."""
    env_rows, layer_rows = [], []
    for entry in study.envs:
        row, layers = env_row(entry, readers.read_dir(entry["path"]))
        env_rows.append(row)
        layer_rows.extend(layers)
    envs = pd.DataFrame(env_rows, columns=ENVS_COLUMNS)
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
    return Tables(runs, curves, envs, pd.DataFrame(layer_rows, columns=LAYER_COLUMNS))


def classify(files):
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


def run_row(entry, files, envs):
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
    row.update(env_verdict(row, envs))
    return row


def results(summary, metrics, config, gpu):
    """Result columns from summary.json and metrics.csv; NaN where a cell has not got them."""
    out = {"epochs_planned": config.get("epochs"), "step_mode": summary.get("step_mode")}
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


def env_identity(env, summary):
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


def first_hash(obj):
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


def env_verdict(row, envs):
    """The gradient stage's verdict for the cell's environment, with the env's state."""
    match = envs[envs["env_id"] == row["env_id"]] if row["env_id"] is not None else envs.iloc[0:0]
    if not len(match) and row["env_id"] is None and len(envs):
        match = match_env_by_params(row, envs)
    if not len(match):
        return {"gradcheck_verdict": "no gradcheck", "gradcheck_max_rel_err": None}
    env = match.iloc[0]
    verdict = env["verdict"] if env["status"] == "completed" else "gradcheck %s" % env["status"]
    return {"gradcheck_verdict": verdict, "gradcheck_max_rel_err": env["max_rel_err"]}


def match_env_by_params(row, envs):
    """Without a manifest: the one env whose known params all equal the cell's."""
    keep = pd.Series(True, index=envs.index)
    for key in ("cudnn", "tf32", "canary"):
        keep &= envs[key].isna() | (envs[key] == row[key])
    if row["torch_version"]:
        keep &= envs["torch_version"].isna() | (envs["torch_version"] == row["torch_version"])
    found = envs[keep]
    return found if len(found) == 1 else envs.iloc[0:0]


def env_row(entry, files):
    """(row of envs.csv, rows of layers) for one gradient-stage directory."""
    row = dict.fromkeys(ENVS_COLUMNS)
    row.update(
        {
            "env_id": entry["id"],
            "in_manifest": entry["in_manifest"],
            "path": files.path,
            "files": ";".join(files.present),
        }
    )
    grad = files.gradcheck
    config = (grad or {}).get("config") or {}
    environ = (grad or {}).get("environ") or (files.env or {}).get("environ") or {}
    for key in ENV_PARAM_KEYS:
        value = entry["params"].get(key, config.get(key))
        row[key] = None if value is None else str(value)
    row.update(
        {
            "torch_version": environ.get("torch"),
            "host": environ.get("host"),
            "gpu": (environ.get("gpu") or {}).get("name"),
        }
    )
    if "gradcheck.json" in files.problems:
        row.update(status="corrupt", reason=files.problems["gradcheck.json"])
        return row, []
    if grad is None:
        if files.failure is not None:
            row.update(status="failed", reason=files.failure.get("reason"))
        else:
            row.update(
                status="missing",
                reason="no gradcheck.json" if files.exists else "no gradcheck directory",
            )
        return row, []
    verdict = grad.get("verdict") or "unknown"
    reasons = grad.get("reasons")
    row.update(
        status="skipped" if verdict == "skipped" else "completed",
        verdict=None if verdict == "skipped" else verdict,
        reasons="; ".join(map(str, reasons)) if isinstance(reasons, list) else reasons,
        precision=grad.get("precision"),
        worst_layer=grad.get("worst_layer"),
        max_rel_err=_number(grad.get("max_rel_err")),
        median_rel_err=_number(grad.get("median_rel_err")),
        gradcheck=describe_gradcheck(grad.get("gradcheck")),
        determinism=describe_determinism(grad.get("determinism")),
    )
    if verdict == "skipped":
        row["reason"] = row["reasons"]
    layers = []
    for i, layer in enumerate(grad.get("layers") or []):
        if isinstance(layer, dict):
            layers.append(
                {
                    "env_id": entry["id"],
                    "layer_index": i,
                    "layer": layer.get("name"),
                    "rel_err_weight": _number(layer.get("rel_err_weight")),
                    "rel_err_input": _number(layer.get("rel_err_input")),
                }
            )
    return row, layers


def describe_gradcheck(record):
    """One line for the float64 dense-layer gradcheck (densenet/grad_layer.py's record)."""
    if not isinstance(record, dict) or not isinstance(record.get("cases"), list):
        return describe(record)
    cases = [c for c in record["cases"] if isinstance(c, dict)]
    mine = [c for c in cases if c.get("configured")]
    failed = [c for c in mine if not c.get("passed")]
    parts = ["this env's cases: %d/%d passed" % (len(mine) - len(failed), len(mine))]
    if failed:
        parts.append(
            "failed: "
            + ", ".join(
                "%s conv, %s grad_output" % (c.get("conv"), c.get("layout")) for c in failed
            )
        )
    for key, label in (
        ("canary_detected", "canary detected"),
        ("all_as_expected", "all %d cases as expected" % len(cases)),
    ):
        if key in record:
            parts.append("%s: %s" % (label, _short(record[key])))
    return "; ".join(parts)


def describe_determinism(record):
    """One line for the two-run determinism check (densenet/determinism.py's record)."""
    if not isinstance(record, dict) or "bitwise_equal" not in record:
        return describe(record)
    text = "bitwise equal" if record["bitwise_equal"] else "NOT bitwise equal"
    if record.get("steps") is not None:
        text += " after %s steps" % record["steps"]
    if not record["bitwise_equal"] and record.get("max_abs_diff") is not None:
        text += "; max |\u0394 param| %s" % _short(record["max_abs_diff"])
    return text


def describe(obj, prefix=""):
    """A nested result object as one line of 'key: value' pairs (the format may grow keys)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        return _short(obj)
    parts = []
    for key, value in obj.items():
        if isinstance(value, dict):
            parts.append(describe(value, prefix + str(key) + "."))
        elif not isinstance(value, list):
            parts.append("%s%s: %s" % (prefix, key, _short(value)))
    return "; ".join(p for p in parts if p)


def _str(value):
    return None if value is None else str(value)


def _short(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "%.3g" % value
    return str(value)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_tables(tables, out_dir):
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
