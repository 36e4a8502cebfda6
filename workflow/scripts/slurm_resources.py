"""What a batch scheduler is asked for per job: time limit and memory (workflow/rules/common.smk).

A cell's time limit is its predicted training time (workflow/rules/cost.smk,
results/<study>/predicted_cost.json) times MARGIN plus STARTUP_MIN (process start, data
loading, the first epoch's kernel selection: none of which the prediction counts), rounded up
to whole minutes; each retry (Snakemake's `attempt`) doubles it. Before a prediction exists
(the first submission of a study whose probes have not run yet, or report.predict_cost off)
the protocol's default applies: long enough for the protocol's longest cell on one GPU.
Memory is host memory, not the GPU's: a fixed figure per device kind, doubled per retry.
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


def read_predicted(path: str, cell: str) -> Optional[float]:
    """predicted_s of `cell` in predicted_cost.json, or None (no file yet, unreadable, no
    prediction for that cell)."""
    try:
        with open(path) as f:
            entry = json.load(f).get(cell)
    except (OSError, ValueError, AttributeError):
        return None
    value = entry.get("predicted_s") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


def runtime_minutes(predicted_s: Optional[float], protocol: str, attempt: int = 1) -> int:
    """Time limit in minutes (module docstring)."""
    if predicted_s is None:
        base = DEFAULT_RUNTIME_MIN.get(protocol, DEFAULT_RUNTIME_MIN["paper"])
    else:
        base = int(math.ceil(predicted_s * MARGIN / 60.0)) + STARTUP_MIN
    return base * 2 ** (max(attempt, 1) - 1)


def mem_mb(cfg: Mapping[str, Any], attempt: int = 1) -> int:
    """Host memory in MB of a training, gradient-check or probe job."""
    kind = "cpu" if cfg["device"] == "cpu" or cfg["gpu"] == "none" else "gpu"
    return MEM_MB[kind] * 2 ** (max(attempt, 1) - 1)
