"""What a batch scheduler is asked for per job: time limit and memory (workflow/rules/common.smk).

A cell's time limit is its predicted training time (workflow/rules/cost.smk,
results/<study>/predicted_cost.json) times MARGIN plus STARTUP_MIN (process start, data
loading, the first epoch's kernel selection: none of which the prediction counts), rounded up
to whole minutes; each retry (Snakemake's `attempt`) doubles it. The cells wait for the
prediction (workflow/rules/common.smk, get_train_inputs), so even a study's first invocation
submits them with it. Without a prediction (report.predict_cost off, a model no probe covers)
the protocol's default applies: long enough for the protocol's longest cell on one GPU.

Memory is host memory, not the GPU's: a cell's predicted peak (predicted_cost.json
`predicted_mem_mb`: the cost probe's resident-set peak of that model's steps, evaluation and
checkpoint, which counts the interpreter, the libraries and the data set it held, plus the
cell's larger data set) times MEM_MARGIN plus MEM_FLOOR_MB, rounded up to whole MB; without a
prediction (none yet, a probe that recorded no memory, gradient checks and probes) a fixed
figure per device kind. Each retry doubles it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional

# Predicted seconds x MARGIN + STARTUP_MIN: the prediction was off by -7% to +32% in
# docs/benchmarks/cost-prediction.md; 1.5x leaves room for a slower node of the same kind.
MARGIN = 1.5
STARTUP_MIN = 10
# Minutes when no prediction exists: smoke and short cells take minutes to hours, a 300-epoch
# DenseNet-BC-190 cell about two days on one recent GPU.
DEFAULT_RUNTIME_MIN = {"smoke": 60, "short": 720, "paper": 2880}
# Host memory in MB: a CPU cell of densenet-bc100-k12 peaks under 2 GB; a GPU job holds the
# CUDA context, the data set and pinned staging buffers.
MEM_MB = {"cpu": 4000, "gpu": 8000}
# Predicted MB x MEM_MARGIN + MEM_FLOOR_MB. The probe measures a few steps in one process; a cell
# also holds what the probe does not see: loading the data set (CIFAR's batches concatenated and
# copied, the synthetic set generated in float64: transient copies of it), the training loop's
# history and checkpoint buffers, and a node whose libraries map more (the floor); the margin
# covers allocator growth over hours of steps on a heap that keeps its peak (--cpu-malloc reuse).
MEM_MARGIN = 1.5
MEM_FLOOR_MB = 1000


def read_predicted(path: str, cell: str, key: str = "predicted_s") -> Optional[float]:
    """`key` (predicted_s, predicted_mem_mb) of `cell` in predicted_cost.json, or None (no file
    yet, unreadable, no prediction for that cell)."""
    try:
        with open(path) as f:
            entry = json.load(f).get(cell)
    except (OSError, ValueError, AttributeError):
        return None
    value = entry.get(key) if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


def runtime_minutes(predicted_s: Optional[float], protocol: str, attempt: int = 1) -> int:
    """Time limit in minutes (module docstring)."""
    if predicted_s is None:
        base = DEFAULT_RUNTIME_MIN.get(protocol, DEFAULT_RUNTIME_MIN["paper"])
    else:
        base = int(math.ceil(predicted_s * MARGIN / 60.0)) + STARTUP_MIN
    return base * 2 ** (max(attempt, 1) - 1)


def mem_mb(cfg: Mapping[str, Any], attempt: int = 1, predicted_mb: Optional[float] = None) -> int:
    """Host memory in MB of a training, gradient-check or probe job (module docstring);
    `predicted_mb`: the cell's predicted_mem_mb, or None."""
    if predicted_mb is None:
        kind = "cpu" if cfg["device"] == "cpu" or cfg["gpu"] == "none" else "gpu"
        base = MEM_MB[kind]
    else:
        base = int(math.ceil(predicted_mb * MEM_MARGIN + MEM_FLOOR_MB))
    return base * 2 ** (max(attempt, 1) - 1)
