"""Fault suite, NaN/inf: a cell whose loss stops being finite ends `diverged` (exit
3 from densenet, a result for the runner: exit 0 and no failure.json), keeps its metrics up to
that epoch, and the report shows it as diverged with the reason, end to end."""

import os
import re
import sys

import pytest
from conftest import REPO
from faultlib import TINY, read_json, render_study_report, run

pytestmark = pytest.mark.slow

RUN_CELL = os.path.join(REPO, "workflow", "scripts", "run_cell.py")


def test_huge_learning_rate_is_diverged_in_cell_and_report(tmp_path):
    cell = tmp_path / "results" / "huge-lr"
    res = run(
        [sys.executable, RUN_CELL, "--runner", "local", "--torch", "local", "--cell-dir", cell,
         "--gpu", "none", "--", "train", *TINY, "--lr", "1e30"]
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr  # a result, not a failure
    assert "diverged: non-finite loss in epoch 1" in res.stdout  # densenet's note, streamed
    assert not (cell / "failure.json").exists()
    summary = read_json(cell / "summary.json")
    assert summary["status"] == "diverged" and summary["epochs_done"] == 1
    assert summary["reason"].startswith("non-finite loss in epoch 1")

    report, runs = render_study_report(tmp_path / "results", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    row = runs["huge-lr"]
    assert row["status"] == "diverged" and row["reason"] == summary["reason"]
    assert row["epochs_done"] == "1"
    html = (tmp_path / "report" / "report.html").read_text()
    body = re.search(r'<tbody data-status="diverged" data-cell="huge-lr">(.*?)</tbody>', html, re.S)
    assert body and "non-finite loss in epoch 1" in body.group(1)
    curves = (tmp_path / "report" / "curves.csv").read_text().splitlines()
    assert len([line for line in curves if line.startswith("huge-lr,diverged,")]) == 1
