"""Read the files of one cell or gradcheck directory, each exactly once, without trusting them.

Cells are written while the report runs (every file is replaced atomically by rename), so each
file is opened once and parsed from memory: a second read could see a newer version. A file
that cannot be parsed is a *problem* named with its file, never a crash and never used as data.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pandas as pd

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
SUMMARY_STATUSES = ("completed", "diverged", "failed", "skipped")
# Files the report links to when present; checkpoint.pt marks a cell that has started.
CELL_FILES = (
    "summary.json",
    "metrics.csv",
    "env.json",
    "failure.json",
    "checkpoint.pt",
    "checkpoint.pt.corrupt",
    "gradcheck.json",
)
NON_NUMBERS = ("nan", "-nan", "NaN")


class CellFiles(object):
    """What one directory holds: parsed files (None when absent or unusable) and problems."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.exists = os.path.isdir(path)
        self.present: list[str] = []
        # file name -> one-line description of what is wrong with it
        self.problems: dict[str, str] = {}
        self.summary: dict[str, Any] | None = None
        self.failure: dict[str, Any] | None = None
        self.env: dict[str, Any] | None = None
        self.gradcheck: dict[str, Any] | None = None
        self.metrics: pd.DataFrame | None = None


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist (it may vanish between list and open).
    Any other OSError (a directory in the file's place, no permission) is raised: the caller
    names it as a problem of that file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_file(path: str, name: str) -> tuple[bytes | None, str | None]:
    """(bytes or None, problem or None): read_bytes, with an unreadable file as a problem."""
    try:
        return read_bytes(path), None
    except OSError as exc:
        return None, "%s: cannot be read (%s)" % (name, exc.strerror or type(exc).__name__)


def parse_json(data: bytes, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(dict, None) or (None, problem) for the bytes of a JSON object file."""
    if not data.strip():
        return None, "%s: empty file" % name
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, "%s: not valid JSON (%s)" % (name, str(exc).split(":")[0])
    if not isinstance(obj, dict):
        return None, "%s: expected a JSON object, found %s" % (name, type(obj).__name__)
    return obj, None


def parse_metrics(data: bytes) -> tuple[pd.DataFrame | None, str | None]:
    """(DataFrame, None) or (None, problem) for the bytes of metrics.csv."""
    text = data.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "metrics.csv: empty file"
    header = lines[0].split(",")
    missing = [c for c in METRIC_COLUMNS if c not in header]
    if missing:
        return None, "metrics.csv: missing columns %s" % ", ".join(missing)
    for number, line in enumerate(lines[1:], start=2):
        if line.count(",") != len(header) - 1:
            return None, "metrics.csv: line %d has %d fields, expected %d (truncated?)" % (
                number,
                line.count(",") + 1,
                len(header),
            )
    # Only the spellings of non-finite floats that Python's csv writer produces count as
    # numbers; anything else (an empty field, a word) leaves its column non-numeric.
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=list(NON_NUMBERS))
    for column in METRIC_COLUMNS:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            row = int((numbers.isna() & frame[column].notna()).to_numpy().nonzero()[0][0])
            return None, "metrics.csv: line %d: %s is %r, not a number" % (
                row + 2,
                column,
                frame[column].iloc[row],
            )
    frame = frame[METRIC_COLUMNS].astype(float)
    expected = list(range(1, len(frame) + 1))
    if [float(e) for e in frame["epoch"]] != [float(e) for e in expected]:
        return None, "metrics.csv: epochs are not 1..%d in order" % len(frame)
    frame["epoch"] = frame["epoch"].astype(int)
    return frame, None


def check_summary(summary: dict[str, Any]) -> str | None:
    """None, or a problem when summary.json parses but breaks the contract."""
    status = summary.get("status")
    if status not in SUMMARY_STATUSES:
        return "summary.json: status %r is not one of %s" % (status, ", ".join(SUMMARY_STATUSES))
    for key in ("final_test_err", "best_test_err", "wall_s", "peak_mem_mb", "img_per_s"):
        value = summary.get(key)
        if value is not None and not isinstance(value, (int, float)):
            return "summary.json: %s is %r, not a number" % (key, value)
    return check_shape(summary, SHAPES["summary.json"], "summary.json")


# What the aggregation (report/aggregate.py, report/gradients.py) reads inside each JSON file,
# and the type it needs there; null or absent is always allowed. A nested dict is an object
# whose own keys are checked; [dict] is a list of objects. Checked here, when the file is read,
# so valid JSON of the wrong shape marks its cell corrupt instead of crashing the report.
SCALAR = (str, int, float, bool)
NUMBER = (int, float)
# The recipe the aggregation and the paper comparison read from a cell's config.
CONFIG_SHAPE = {
    "epochs": int,
    "n_train": int,
    "n_test": int,
    "batch_size": int,
    "lr": NUMBER,
    "dropout": NUMBER,
    "augment_order": str,
    "stem": str,
    "momentum_form": str,
    "bn_eps": NUMBER,
}
ENVIRON_SHAPE = {
    "gpu": {"name": SCALAR, "capability": SCALAR, "driver": SCALAR},
    "image": {"tag": SCALAR, "digest": SCALAR},
    "torch": SCALAR,
    "cuda": SCALAR,
    "cudnn": SCALAR,
    "host": SCALAR,
    "git_sha": SCALAR,
    "python": SCALAR,
}
SHAPES = {
    "summary.json": {
        "config": CONFIG_SHAPE,
        "conv_kernels": {"kernels": [dict]},
        "step_mode": str,
        "reason": SCALAR,
        "dataset_identity": SCALAR,
        "epochs_done": int,
    },
    "env.json": {
        "config": CONFIG_SHAPE,
        "environ": ENVIRON_SHAPE,
        "flags": {
            "applicability": {},
            "cudnn_enabled": SCALAR,
            "cudnn_benchmark": SCALAR,
            "cudnn_deterministic": SCALAR,
            "tf32_effective": SCALAR,
            "deterministic_algorithms": SCALAR,
        },
        "dataset": {"identity": SCALAR, "name": SCALAR},
    },
    "failure.json": {"reason": SCALAR, "exit_code": int},
    "gradcheck.json": {
        "config": {},
        "environ": ENVIRON_SHAPE,
        "layers": [dict],
        "verdict": str,
    },
}
TYPE_WORDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    NUMBER: "a number",
    SCALAR: "a single value",
}


def check_shape(obj: dict[str, Any], shape: dict[str, Any], where: str) -> str | None:
    """None, or a one-line problem naming the first key of obj whose value breaks shape."""
    for key, want in shape.items():
        value = obj.get(key)
        if value is None:
            continue
        path = "%s: %s" % (where, key) if where.endswith(".json") else "%s.%s" % (where, key)
        if isinstance(want, dict):
            problem = _wrong_type(value, dict, path) or check_shape(value, want, path)
        elif isinstance(want, list):
            problem = _wrong_type(value, list, path) or _wrong_item(value, want[0], path)
        else:
            problem = _wrong_type(value, want, path)
        if problem:
            return problem
    return None


def _wrong_item(values: list[Any], want: type | tuple[type, ...], path: str) -> str | None:
    for i, value in enumerate(values):
        problem = _wrong_type(value, want, "%s[%d]" % (path, i))
        if problem:
            return problem
    return None


def _wrong_type(value: Any, want: type | tuple[type, ...], path: str) -> str | None:
    # bool is an int to isinstance; no key read as a number means true/false.
    if isinstance(value, want) and not (want in (int, NUMBER) and isinstance(value, bool)):
        return None
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return "%s is %s, expected %s" % (path, shown, TYPE_WORDS[want])


def read_dir(path: str) -> CellFiles:
    """Read every known file of a cell or gradcheck directory once."""
    cell = CellFiles(path)
    if not cell.exists:
        return cell
    try:
        names = set(os.listdir(path))
    except OSError:
        return cell
    cell.present = [n for n in CELL_FILES if n in names]
    for name, attr in (
        ("summary.json", "summary"),
        ("failure.json", "failure"),
        ("env.json", "env"),
        ("gradcheck.json", "gradcheck"),
    ):
        if name not in names:
            continue
        data, problem = read_file(os.path.join(path, name), name)
        if data is None and problem is None:
            continue
        obj = None
        if problem is None:
            obj, problem = parse_json(data, name)
        if problem is None:
            problem = check_json(obj, name)
        # A file with a problem is never used as data.
        setattr(cell, attr, None if problem else obj)
        if problem:
            cell.problems[name] = problem
    data = problem = None
    if "metrics.csv" in names:
        data, problem = read_file(os.path.join(path, "metrics.csv"), "metrics.csv")
    if data is not None:
        cell.metrics, problem = parse_metrics(data)
    if problem:
        cell.problems["metrics.csv"] = problem
    cell.present = [n for n in cell.present if n != "metrics.csv" or data is not None]
    return cell


def check_json(obj: dict[str, Any], name: str) -> str | None:
    """None, or the problem of a parsed JSON object that breaks its file's contract."""
    if name == "summary.json":
        return check_summary(obj)
    return check_shape(obj, SHAPES[name], name)
