"""The optional cost prediction, results/<study>/predicted_cost.json (written before a study runs
by the cost-prediction step, issue 6). The report only compares it with what was measured.

Read shape: {"cells": {"<cell id>": SECONDS or {"predicted_s": SECONDS, ...}}}; a list of
{"id"/"cell_id", "predicted_s"} under "cells" is accepted too, as are the keys "wall_s",
"seconds" and "gpu_s" for the seconds. Anything unreadable is reported, not guessed at.
"""

import json
import os

SECONDS_KEYS = ("predicted_s", "predicted_wall_s", "wall_s", "seconds", "gpu_s")


def load(path):
    """({cell id: predicted seconds}, note for the page)."""
    if not path or not os.path.isfile(path):
        return {}, "no prediction (%s not found)" % (
            os.path.basename(path or "") or "predicted_cost.json"
        )
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, "no prediction: %s is unreadable (%s)" % (os.path.basename(path), exc)
    cells = data.get("cells", data) if isinstance(data, dict) else data
    if isinstance(cells, list):
        cells = {str(c.get("id", c.get("cell_id"))): c for c in cells if isinstance(c, dict)}
    out = {}
    for cell_id, value in cells.items() if isinstance(cells, dict) else []:
        seconds = _seconds(value)
        if seconds is not None:
            out[str(cell_id)] = seconds
    if not out:
        return {}, "no prediction: %s holds no per-cell seconds" % os.path.basename(path)
    return out, "prediction from %s (%d cells)" % (os.path.basename(path), len(out))


def _seconds(value):
    if isinstance(value, dict):
        value = next((value[k] for k in SECONDS_KEYS if k in value), None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
