"""Fault suite, concurrent rendering: while a writer process keeps rewriting the
metrics.csv and summary.json of four cells, the report reads them in a loop (and renders the
full page) and never sees a partial file: no `corrupt` state, no exception. The same test
against a deliberately naive writer (in place, no rename) must catch torn files, which shows
that it can fail."""

import csv
import os
import subprocess
import sys
import time

import pytest
from churn_cells import CELLS, write_all
from conftest import REPO
from faultlib import ENV

from densenet import atomic
from report import aggregate, study
from report.cli import main as report_main

CHURN = os.path.join(REPO, "tests", "churn_cells.py")
READ_S = 8.0  # atomic writer: how long the report keeps reading
NAIVE_DEADLINE_S = 60.0  # naive writer: torn files show up within a few reads
FULL_RENDERS = 2
EXPECTED = {name: "running" if kind == "running" else "completed" for name, kind in CELLS.items()}


def read_states(root):
    """One aggregate as the report makes it: {cell: (status, reason)} and the last test
    errors (which change with every version the writer makes)."""
    runs = aggregate.aggregate(study.from_results(root)).runs
    states = {r.cell_id: (r.status, r.reason) for r in runs.itertuples()}
    return states, tuple(runs.sort_values("cell_id")["last_test_err"])


def render_states(root, out):
    """A full `python -m report` render (in process); {cell: (status, reason)} of runs.csv."""
    assert report_main(["--results", root, "--out", out]) == 0
    with open(os.path.join(out, "runs.csv")) as f:
        return {r["cell_id"]: (r["status"], r["reason"]) for r in csv.DictReader(f)}


def unexpected(states):
    return {c: s for c, s in states.items() if s[0] != EXPECTED.get(c)}


@pytest.mark.parametrize("writer", ["atomic", "naive"])
def test_report_never_reads_a_partial_file(writer, tmp_path):
    root = str(tmp_path / "results")
    write_all(root, 0, atomic.write_bytes)  # complete cells before anyone reads
    stop = tmp_path / "stop"
    churn = subprocess.Popen(
        [sys.executable, CHURN, root, writer, str(stop)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    bad, errors, versions, reads = [], [], set(), 0
    deadline = time.time() + (READ_S if writer == "atomic" else NAIVE_DEADLINE_S)
    try:
        while time.time() < deadline and not (writer == "naive" and (bad or errors)):
            try:
                states, version = read_states(root)
            except Exception as exc:  # the report must never raise on a cell's files
                errors.append(repr(exc))
                continue
            reads += 1
            versions.add(version)
            if unexpected(states):
                bad.append(unexpected(states))
        for _ in range(FULL_RENDERS if writer == "atomic" else 0):
            rendered = render_states(root, str(tmp_path / "report"))
            if unexpected(rendered):
                bad.append(unexpected(rendered))
    finally:
        stop.touch()
        written, churn_err = churn.communicate(timeout=120)
    assert churn.returncode == 0, churn_err
    print("%s writer: %s files written, %d reads, %d versions seen, first bad read %s, errors %s"
          % (writer, written.strip(), reads, len(versions), bad[:1], errors[:1]))  # fmt: skip
    if writer == "naive":
        # Torn files are caught and named, as corrupt (never used) or running (rows missing).
        assert bad or errors, "no torn file seen in %d reads" % reads
        return
    assert errors == [] and bad == [], (errors, bad[:3])
    # The reads overlapped the writes: many files rewritten, several versions seen.
    assert reads >= 5 and int(written) >= 20 and len(versions) >= 2, (reads, written, versions)
