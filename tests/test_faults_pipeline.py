"""Fault suite, a failed cell inside a study: one cell's job fails, the other cells go
on (keep-going, from the default profile that a plain `snakemake` loads), the failed cell keeps
its reason and log tail in failure.json, and the report rendered after the failed run shows it
as `failed` beside the completed one.

The fault: a cell directory the trainer cannot write into (its metrics.csv is a directory, as
a botched copy leaves it; exit 1, one line). Beside it, a cell holding a checkpoint.pt made
under another configuration (the study's options changed since) is obsolete in the workflow:
it is moved aside and the cell trains afresh (--stale-checkpoint restart), not failed."""

import csv
import os

import pytest
from conftest import read_json
from helpers.pipeline_helpers import checkout, snakemake

from densenet import checkpoint

pytestmark = pytest.mark.slow

CELL = (
    "densenet-bc40-k12.synthetic.aug-on.sgd.torch-local.cudnn-on.tf32-off.det-off."
    "canary-none.seed-%d"
)
TINY_STUDY = [
    'axes={"dataset": ["synthetic"], "canary": ["none"], "seed": [0, 1]}',
    'train={"epochs": 1, "n_train": 200, "n_test": 100}',
    'gradcheck={"batch_size": 2, "steps": 1}',
    # No cost probe: the prediction is not what fails here (tests/test_pipeline_run.py runs it).
    'report={"predict_cost": false}',
]


def test_a_failed_cell_does_not_stop_the_study(tmp_path):
    work = checkout(tmp_path / "repo")
    cells = os.path.join(work, "results", "default", "cells")
    good, bad = os.path.join(cells, CELL % 0), os.path.join(cells, CELL % 1)
    os.makedirs(os.path.join(bad, "metrics.csv"))
    stale = {"epoch": 1, "config": {"model": "densenet40-k12"}}  # another study's cell
    checkpoint.save(os.path.join(good, "checkpoint.pt"), stale)

    # The README's plain command: keep-going comes from the default profile Snakemake loads.
    res = snakemake(work, "--cores", "all", "--config", *TINY_STUDY)
    log = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode != 0, log  # the study reports the failure, and goes on:
    assert read_json(os.path.join(good, "summary.json"))["status"] == "completed", log
    assert os.path.exists(os.path.join(good, "checkpoint.pt.stale"))  # kept, never read again
    with open(os.path.join(work, "results", "default", "logs", "cells", CELL % 0 + ".log")) as f:
        assert "model: 'densenet40-k12' vs 'densenet-bc40-k12'" in f.read()
    failure = read_json(os.path.join(bad, "failure.json"))
    assert failure["status"] == "failed" and failure["exit_code"] == 1
    assert "Is a directory" in failure["reason"] and "metrics.csv" in failure["reason"]
    assert any(line.startswith("error: [Errno 21]") for line in failure["log_tail"])
    assert not os.path.exists(os.path.join(bad, "summary.json"))

    runs_csv = os.path.join(work, "results", "default", "report", "runs.csv")
    with open(runs_csv) as f:
        runs = {r["cell_id"]: r for r in csv.DictReader(f)}
    assert runs[CELL % 0]["status"] == "completed"
    assert runs[CELL % 1]["status"] == "failed"
    assert "Is a directory" in runs[CELL % 1]["reason"]
