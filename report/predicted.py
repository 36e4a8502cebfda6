"""The optional cost prediction, results/<study>/predicted_cost.json, written before a study
runs by workflow/scripts/predict_cost.py. The report only sets it beside what was measured.

Shape: {"<cell id>": {"predicted_s": SECONDS or null, "basis": "...", ...}}. Also read: the
same mapping under a "cells" key, a list of {"id" or "cell_id", "predicted_s"}, and a bare
number per cell. Anything unreadable is said on the page, not guessed at.
"""

from __future__ import annotations

import json
import os
from typing import Any

SECONDS_KEYS = ("predicted_s", "predicted_wall_s", "wall_s", "seconds")


def load(path: str | None) -> tuple[dict[str, dict[str, Any]], str]:
    """({cell id: {"seconds", "basis"}}, note for the page)."""
    name = os.path.basename(path or "") or "predicted_cost.json"
    if not path or not os.path.isfile(path):
        return {}, "no prediction (%s not found)" % name
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, "no prediction: %s is unreadable (%s)" % (name, exc)
    cells = data.get("cells", data) if isinstance(data, dict) else data
    if isinstance(cells, list):
        cells = {str(c.get("id", c.get("cell_id"))): c for c in cells if isinstance(c, dict)}
    out, unpredicted = {}, 0
    for cell_id, value in cells.items() if isinstance(cells, dict) else []:
        seconds = _seconds(value)
        if seconds is None:
            unpredicted += 1
            continue
        basis = value.get("basis") if isinstance(value, dict) else None
        out[str(cell_id)] = {"seconds": seconds, "basis": basis}
    if not out:
        return {}, "no prediction: %s holds no per-cell seconds" % name
    note = "prediction from %s (%d cells" % (name, len(out))
    if unpredicted:
        note += "; %d without a prediction, e.g. no probe for their model" % unpredicted
    return out, note + ")"


def _seconds(value: Any) -> float | None:
    if isinstance(value, dict):
        value = next((value[k] for k in SECONDS_KEYS if k in value), None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
