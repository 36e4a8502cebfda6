"""The gradient stage's side of the aggregate: one row per environment (envs.csv), one per
env x layer (layers.csv), and the verdict each training cell inherits from its environment.

gradcheck.json is written by densenet/gradcheck/stage.py; its nested records (the dense-layer
gradcheck cases, the determinism runs) are summarised in one line each, and unknown or
missing keys are tolerated (the format may grow).
"""

import pandas as pd

from report.study import ENV_PARAM_KEYS

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
    """One line for the float64 dense-layer gradcheck (the record of
    densenet/gradcheck/dense_layer.py)."""
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
    """One line for the two-run determinism check (densenet/gradcheck/determinism.py's record)."""
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


def _short(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "%.3g" % value
    return str(value)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
