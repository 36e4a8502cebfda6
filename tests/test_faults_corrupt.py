"""Fault suite, corrupt files: a truncated or bit-flipped checkpoint.pt, a torn or
garbage metrics.csv, a truncated summary.json, env.json or failure.json. Each is detected,
named in one line and never used: a bad checkpoint is quarantined and the cell restarts;
metrics.csv is rebuilt from the checkpoint on resume; in a finished cell the report shows
`corrupt` naming the file; the runner does not take a corrupt summary.json for a result."""

import os
import sys

import pytest
import torch
from conftest import REPO
from faultlib import (
    copy_cell,
    flip_byte,
    inject,
    interrupted_cell,
    metrics_rows,
    read_json,
    reference_cell,
    render_study_report,
    results,
    train_argv,
    trained_cell,
    truncate,
)

from report import aggregate, study

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import run_cell  # noqa: E402  (workflow/scripts is not a package)


def payload_middle(path):
    """Offset of a byte in the middle of the checkpoint's payload, as stored in the file.

    torch.save pickles bytes at protocol 2 as a latin-1 string, i.e. UTF-8 in the file; the
    byte found is ASCII, so flipping its lowest bit keeps the pickle readable and only the
    SHA-256 can tell."""
    payload = torch.load(path, map_location="cpu", weights_only=False)["payload"]
    with open(path, "rb") as f:
        raw = f.read()
    for stored in (payload.decode("latin-1").encode("utf-8"), payload):
        start = raw.find(stored[1000:1100]) - 1000
        if start >= 0:
            break
    assert start >= 0, "payload not found in %s" % path
    offset = start + len(stored) // 2
    while raw[offset] >= 0x80:
        offset += 1
    return offset


def damage_checkpoint(path, how):
    if how == "truncated":
        truncate(path, 0.5)
    elif how == "payload-bit-flip":
        with open(path, "r+b") as f:
            offset = payload_middle(path)
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 0x01]))
    else:  # payload-byte-flip: 0xFF breaks the UTF-8 of the pickled payload
        flip_byte(path, payload_middle(path))


CHECKPOINT_PROBLEMS = {
    "truncated": "is unreadable (PytorchStreamReader failed reading zip archive",
    "payload-bit-flip": "fails its SHA-256 check (corrupted)",
    "payload-byte-flip": "is unreadable (",
}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(CHECKPOINT_PROBLEMS))
def test_corrupt_checkpoint_is_quarantined_and_the_cell_restarts(how, tmp_path, tmp_path_factory):
    reference = reference_cell(tmp_path_factory)
    cell = copy_cell(interrupted_cell(tmp_path_factory), tmp_path / "cell")
    ckpt = cell / "checkpoint.pt"
    damage_checkpoint(str(ckpt), how)
    damaged = ckpt.read_bytes()

    again = inject("--", *train_argv(cell))
    assert again.returncode == 0, again.stderr
    named = [line for line in again.stderr.splitlines() if "checkpoint.pt" in line]
    assert len(named) == 1, again.stderr
    assert named[0].startswith("checkpoint %s %s" % (ckpt, CHECKPOINT_PROBLEMS[how]))
    assert named[0].endswith("moved to checkpoint.pt.corrupt, starting the cell from epoch 1")
    assert "resuming" not in again.stderr
    assert (cell / "checkpoint.pt.corrupt").read_bytes() == damaged  # kept for inspection
    assert metrics_rows(cell / "metrics.csv") == metrics_rows(reference / "metrics.csv")
    assert results(cell) == results(reference)


def damage_metrics(path, how):
    if how == "truncated-mid-row":
        with open(path, "rb") as f:
            lines = f.read().splitlines(True)
        with open(path, "wb") as f:
            f.write(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # as a torn write
    else:
        with open(path, "wb") as f:
            f.write(b"\x00\xff garbage \x13\x37\n" * 3)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated-mid-row", "garbage"])
def test_corrupt_metrics_of_an_interrupted_cell_is_rebuilt_on_resume(
    how, tmp_path, tmp_path_factory
):
    reference = reference_cell(tmp_path_factory)
    # Killed after the last epoch: the rerun trains nothing, so only the checkpoint's rows
    # can give back metrics.csv.
    cell = copy_cell(trained_cell(tmp_path_factory), tmp_path / "cell")
    damage_metrics(str(cell / "metrics.csv"), how)
    # Until the rerun, the report names the damaged file rather than plotting it.
    runs = aggregate.aggregate(study.from_results(str(tmp_path))).runs
    assert runs["status"].tolist() == ["corrupt"]
    assert runs["corrupt_file"].tolist() == ["metrics.csv"]

    again = inject("--", *train_argv(cell))
    assert again.returncode == 0, again.stderr
    assert "resuming from %s at epoch 3" % (cell / "checkpoint.pt") in again.stderr
    assert metrics_rows(cell / "metrics.csv") == metrics_rows(reference / "metrics.csv")
    assert results(cell) == results(reference)


def torn_failure(path):
    """Make the cell a failed one (no summary.json) whose failure.json was cut short."""
    os.remove(os.path.join(os.path.dirname(path), "summary.json"))
    with open(path, "w") as f:
        f.write('{"status": "failed", "reason": "runner docker: container OOM-kil')


FINISHED_DAMAGE = {
    # cell name -> (file, damage, the reason's beginning)
    "summary-truncated": ("summary.json", lambda p: truncate(p, 0.5), "summary.json: not valid"),
    "env-truncated": ("env.json", lambda p: truncate(p, 0.5), "env.json: not valid"),
    "failure-truncated": ("failure.json", torn_failure, "failure.json: not valid"),
    "metrics-truncated-mid-row": (
        "metrics.csv",
        lambda p: damage_metrics(p, "truncated-mid-row"),
        "metrics.csv: line 3 has",
    ),
    "metrics-garbage": (
        "metrics.csv",
        lambda p: damage_metrics(p, "garbage"),
        "metrics.csv: missing columns",
    ),
}


@pytest.mark.slow
def test_corrupt_files_of_finished_cells_show_as_corrupt_in_the_report(tmp_path, tmp_path_factory):
    reference = reference_cell(tmp_path_factory)
    cells = tmp_path / "results"
    copy_cell(reference, cells / "intact")  # the control: the same files, undamaged
    for name, (file, damage, _) in FINISHED_DAMAGE.items():
        damage(str(copy_cell(reference, cells / name) / file))

    res, runs = render_study_report(cells, tmp_path / "report")
    assert res.returncode == 0, res.stderr
    assert runs["intact"]["status"] == "completed" and runs["intact"]["final_test_err"]
    html = (tmp_path / "report" / "report.html").read_text()
    curves = (tmp_path / "report" / "curves.csv").read_text()
    for name, (file, _, reason) in FINISHED_DAMAGE.items():
        row = runs[name]
        assert (row["status"], row["corrupt_file"]) == ("corrupt", file)
        assert row["reason"].startswith(reason) and "\n" not in row["reason"]
        assert row["final_test_err"] == "" and row["best_test_err"] == ""  # never used
        assert '<tbody data-status="corrupt" data-cell="%s">' % name in html
        assert name not in curves


@pytest.mark.parametrize(
    "text, reason",
    [
        (b'{"status": "completed", "final_te', "summary.json is corrupt"),
        (b"", "summary.json is corrupt"),
        (b'["completed"]', "summary.json is corrupt"),
        (b'{"status": "running"}', "status running"),
    ],
    ids=["truncated", "empty", "not-an-object", "unknown-status"],
)
def test_runner_fails_a_job_whose_summary_is_corrupt(tmp_path, monkeypatch, text, reason):
    """The job exits 0 but leaves a damaged summary.json: the runner must not report success
    (Snakemake would then keep the file as the cell's result)."""
    cell = tmp_path / "cell"

    def job_that_leaves(argv, cell_dir, *rest):
        (cell / "summary.json").write_bytes(text)
        return 0

    monkeypatch.setattr(run_cell, "run_local", job_that_leaves)
    argv = ["--runner", "local", "--torch", "local", "--cell-dir", str(cell), "--gpu", "none"]
    code = run_cell.main(argv + ["--", "train", "--model", "densenet-bc40-k12"])
    assert code == 1
    failure = read_json(cell / "failure.json")
    assert failure["status"] == "failed" and failure["exit_code"] == 1
    assert failure["reason"].startswith(reason)
