"""Trainer and bench test helpers, shared by the tests of this interpreter's torch and of the
oldest one."""

import csv
import os
import signal
import time

from conftest import TINY_MODEL, densenet, start_densenet, tiny_cell

from densenet.celldir import TIMING_COLUMNS

TINY = tiny_cell(300, 100)  # 5 batches of 64, the last one partial

# `densenet bench` in seconds: batch 4, 2 timed steps x 2 rounds, 256 images x 2 data rounds.
# One torch thread: on a shared 2-core machine two OpenMP threads can be 5-20x slower.
TINY_BENCH = ["--model", TINY_MODEL, "--batch-size", "4", "--device", "cpu"]
TINY_BENCH += ["--threads", "1", "--steps", "2", "--rounds", "2", "--warmup", "1"]
TINY_BENCH += ["--data-images", "256", "--data-rounds", "2"]


def read_metrics(path, drop_timing=True):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if drop_timing:
        for r in rows:
            for k in TIMING_COLUMNS:
                r.pop(k)
    return rows


def kill9_in_epoch_2_then_resume(tmp_path, python=None, extra=()):
    """Train 3 epochs straight; train again, kill -9 in epoch 2, rerun (each with the options
    `extra` too). Asserts that the rerun resumed at epoch 2 and returns (metrics of the
    straight run, metrics of the resumed one)."""
    args = ["--epochs", "3", *TINY, *extra]
    ref = densenet("train", "--out", tmp_path / "ref", *args, python=python)
    assert ref.returncode == 0, ref.stderr
    proc = start_densenet("train", "--out", tmp_path / "killed", *args, python=python)
    first = proc.stdout.readline()
    assert first.startswith("epoch 1/3"), first
    time.sleep(0.3)  # inside epoch 2: an epoch of 300 images takes seconds on a CPU
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(tmp_path / "killed" / "summary.json")
    again = densenet("train", "--out", tmp_path / "killed", *args, python=python)
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stderr and "at epoch 2" in again.stderr
    return read_metrics(tmp_path / "ref" / "metrics.csv"), read_metrics(
        tmp_path / "killed" / "metrics.csv"
    )
