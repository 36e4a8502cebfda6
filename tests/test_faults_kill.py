"""Fault suite, kill -9: a training job SIGKILLed at 9 deterministic positions, among
them half-way through the env.json, checkpoint, metrics.csv and summary.json writes. Rerunning
the same command resumes and ends exactly as an uninterrupted run (every metrics.csv column but
the timings, bit for bit on CPU), and the half-written temp file a kill leaves is never read."""

import json
import os

import pytest
from faultinject import KILL_POSITIONS, opened_for_reading
from faultlib import (
    inject,
    metrics_rows,
    reference_cell,
    results,
    temp_files,
    train_argv,
)

from densenet import checkpoint

pytestmark = pytest.mark.slow

# position -> (epoch the rerun resumes at (None: no checkpoint, starts afresh), the file whose
# temp copy the kill leaves half-written (None: none), metrics.csv rows left by the kill)
EXPECTED = {
    "env-write": (None, "env.json", 0),
    "epoch1-mid-training": (None, None, 0),
    "epoch2-evaluation": (2, None, 1),
    "epoch2-checkpoint-write": (2, "checkpoint.pt", 1),
    "epoch2-after-checkpoint": (3, None, 1),  # metrics.csv lags: rebuilt from the checkpoint
    "epoch2-metrics-write": (3, "metrics.csv", 1),
    "before-summary": (3, None, 2),
    "summary-write": (3, "summary.json", 2),
    "after-summary": (3, None, 2),
}


def test_every_position_has_an_expectation():
    assert sorted(EXPECTED) == sorted(KILL_POSITIONS)


def check_killed_state(cell, position):
    """What the kill left: the previous versions intact, at most one half-written temp file."""
    resume_at, torn, rows = EXPECTED[position]
    strays = temp_files(cell)
    if torn:
        assert len(strays) == 1 and strays[0].startswith(".tmp-%s-" % torn), strays
        assert os.path.getsize(os.path.join(str(cell), strays[0])) > 0  # half was written
    else:
        assert strays == []
    metrics = os.path.join(str(cell), "metrics.csv")
    assert (len(metrics_rows(metrics)) if os.path.exists(metrics) else 0) == rows
    ckpt = os.path.join(str(cell), "checkpoint.pt")
    if resume_at is None:
        assert not os.path.exists(ckpt)
    else:
        assert checkpoint.load(ckpt)["epoch"] == resume_at - 1  # the old one, verified
    summary = os.path.exists(os.path.join(str(cell), "summary.json"))
    assert summary == (position == "after-summary")
    return strays


@pytest.mark.parametrize("position", sorted(KILL_POSITIONS))
def test_kill9_then_rerun_resumes_identically(position, tmp_path, tmp_path_factory):
    reference = reference_cell(tmp_path_factory)
    cell = tmp_path / "cell"
    killed = inject("--kill-at", position, "--", *train_argv(cell))
    assert killed.returncode == -9, killed.stderr  # died by SIGKILL, where we put it
    strays = check_killed_state(cell, position)

    trace = tmp_path / "opens.jsonl"
    again = inject("--trace-opens", trace, "--", *train_argv(cell))
    assert again.returncode == 0, again.stderr
    resume_at = EXPECTED[position][0]
    if resume_at is None:
        assert "resuming" not in again.stderr
    else:
        assert "resuming from %s at epoch %d" % (cell / "checkpoint.pt", resume_at) in again.stderr
    assert metrics_rows(cell / "metrics.csv") == metrics_rows(reference / "metrics.csv")
    assert results(cell) == results(reference)
    assert results(cell)["status"] == "completed"
    assert not os.path.exists(cell / "checkpoint.pt")  # removed once completed, as by default
    assert temp_files(cell) == []  # the torn temp file was deleted unread when the rerun began
    assert ("removed %d temporary file(s)" % len(strays) in again.stderr) == bool(strays)

    opened = [json.loads(line) for line in trace.read_text().splitlines()]
    read = [r["path"] for r in opened if opened_for_reading(r)]
    assert not [p for p in read if os.path.basename(p).startswith(".tmp-")], read
    assert not [r for r in opened if os.path.basename(r["path"]) in strays]
    assert os.path.join(str(cell), "checkpoint.pt") in read or resume_at is None
