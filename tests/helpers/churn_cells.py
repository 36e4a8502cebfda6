"""Rewrite the files of a few cell directories in a loop, as training jobs do, until told to
stop (tests/test_faults_concurrent.py runs the report against it).

    python tests/helpers/churn_cells.py ROOT atomic|naive STOPFILE

`atomic` writes through densenet.atomic (temp file + rename), `naive` opens the destination
and writes it in place. Both pause half-way through every file (after an fsync), so that a
reader has a wide window to catch a file being written: the only difference is where the
half-written bytes are. Prints the number of files written when it stops.
"""

import json
import os
import sys
import time

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]

from densenet import atomic  # noqa: E402
from helpers import report_fixtures as fx  # noqa: E402

PAUSE_S = 0.002
EPOCHS = 300
# name -> kind: `running` cells only rewrite metrics.csv (one more or fewer rows each time),
# `finished` cells rewrite metrics.csv and summary.json (same epochs, new numbers).
CELLS = {"running-0": "running", "running-1": "running", "finished-0": "finished",
         "finished-1": "finished"}  # fmt: skip


def metrics_text(rows):
    lines = [",".join(fx.METRIC_COLUMNS)]
    for r in rows:
        lines.append(",".join(str(r[c]) if c == "epoch" else repr(float(r[c]))
                              for c in fx.METRIC_COLUMNS))  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def cell_files(name, version):
    """{file name: bytes} of cell `name` at `version` (every version a complete, valid cell)."""
    p = fx.params(seed=version % 7, device="cpu", protocol="short")
    rows = fx.curve(EPOCHS, 5.0 + version % 11, version)
    if CELLS[name] == "running":
        return {"metrics.csv": metrics_text(rows[: EPOCHS - 50 + version % 50])}
    config = dict(p, epochs=EPOCHS, seed=int(p["seed"]))
    summary = fx._summary("completed", rows, config)
    return {"metrics.csv": metrics_text(rows),
            "summary.json": json.dumps(summary, sort_keys=True).encode()}  # fmt: skip


def write_naive(path, data):
    with open(path, "wb") as f:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        os.fsync(f.fileno())
        time.sleep(PAUSE_S)
        f.write(data[half:])


def slow_atomic():
    """densenet.atomic.write_bytes with the same half-way pause inside its temp file."""
    from helpers.faultinject import WriteFault

    WriteFault(atomic, None, None, "during", lambda path: time.sleep(PAUSE_S))
    return atomic.write_bytes


def write_all(root, version, write):
    """Write every file of every cell at `version`; returns how many files were written."""
    written = 0
    for name in CELLS:
        for file, data in cell_files(name, version).items():
            write(os.path.join(root, name, file), data)
            written += 1
    return written


def main():
    root, mode, stop = sys.argv[1:4]
    write = slow_atomic() if mode == "atomic" else write_naive
    version, written = 1, 0
    while not os.path.exists(stop):
        written += write_all(root, version, write)
        version += 1
    print(written)


if __name__ == "__main__":
    main()
