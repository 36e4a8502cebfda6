"""Helpers of the fault tests (tests/test_faults_*.py): the tiny training run, the fault
wrapper tests/faultinject.py as a subprocess, reading and damaging cell files."""

import csv
import os
import shutil
import subprocess
import sys

from conftest import REPO, read_json, tiny_cell

FAULTINJECT = os.path.join(REPO, "tests", "faultinject.py")
EPOCHS = 2
# 300 images, batch 64: 5 steps per epoch (faultinject.KILL_POSITIONS counts on that).
TINY = tiny_cell(300, 100) + ["--epochs", str(EPOCHS)]
# Every run with one thread: CPU reductions are summed in another order with another thread
# count, so a resumed run is bit-identical to an uninterrupted one only at equal settings
# (and one thread is also the fastest on a busy 2-core machine).
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=REPO)
TIMING_COLUMNS = ("epoch_s", "img_per_s")
RESULT_KEYS = ("status", "final_test_err", "best_test_err", "epochs_done", "dataset_identity")


def run(argv, timeout=900):
    return subprocess.run(
        [str(a) for a in argv], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def inject(*args, timeout=900):
    """tests/faultinject.py ARGS (fault options, `--`, then the target's command line)."""
    return run([sys.executable, FAULTINJECT] + list(args), timeout=timeout)


def densenet(*args, timeout=900):
    """`python -m densenet ARGS`, unmodified."""
    return run([sys.executable, "-m", "densenet"] + list(args), timeout=timeout)


def train_argv(out, *extra):
    return ["densenet", "train", "--out", out] + TINY + list(extra)


def metrics_rows(path):
    """metrics.csv rows as strings (exact float reprs), without the timing columns."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def results(cell):
    """The parts of summary.json that an identical run reproduces (not times, not memory)."""
    summary = read_json(os.path.join(str(cell), "summary.json"))
    return {k: summary.get(k) for k in RESULT_KEYS}


def temp_files(directory):
    return sorted(n for n in os.listdir(str(directory)) if n.startswith(".tmp-"))


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def truncate(path, fraction=0.5):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def copy_cell(src, dst):
    shutil.copytree(str(src), str(dst))
    return dst


_CACHE = {}


def reference_cell(tmp_path_factory):
    """An uninterrupted run of the tiny cell with `python -m densenet train` (once per session;
    every fault test compares its end state with this one)."""
    if "reference" not in _CACHE:
        out = tmp_path_factory.mktemp("reference") / "cell"
        res = densenet("train", "--out", out, *TINY)
        assert res.returncode == 0, res.stderr
        _CACHE["reference"] = out
    return _CACHE["reference"]


def killed_cell(tmp_path_factory, position):
    """The tiny cell killed (-9) at a faultinject.KILL_POSITIONS position (once per session
    and position; tests damage copies of it)."""
    if position not in _CACHE:
        out = tmp_path_factory.mktemp("killed-" + position) / "cell"
        res = inject("--kill-at", position, "--", *train_argv(out))
        assert res.returncode == -9, res.stderr
        _CACHE[position] = out
    return _CACHE[position]


def interrupted_cell(tmp_path_factory):
    """Killed at the start of epoch 2's evaluation: checkpoint.pt and metrics.csv of epoch 1,
    no summary.json; a rerun trains epoch 2."""
    cell = killed_cell(tmp_path_factory, "epoch2-evaluation")
    assert len(metrics_rows(cell / "metrics.csv")) == 1
    return cell


def trained_cell(tmp_path_factory):
    """Killed after the last epoch, before summary.json: a rerun trains nothing, so what it
    writes comes from the checkpoint alone."""
    cell = killed_cell(tmp_path_factory, "before-summary")
    assert len(metrics_rows(cell / "metrics.csv")) == EPOCHS
    return cell


def render_study_report(results_dir, out):
    """`python -m report --results DIR --out OUT`; returns (process, runs.csv rows by cell id)."""
    res = run([sys.executable, "-m", "report", "--results", results_dir, "--out", out])
    rows = {}
    if res.returncode == 0:
        with open(os.path.join(str(out), "runs.csv")) as f:
            rows = {r["cell_id"]: r for r in csv.DictReader(f)}
    return res, rows
