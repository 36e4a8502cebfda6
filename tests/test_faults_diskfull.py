"""Fault suite, disk full: a write that fails with ENOSPC half-way leaves nothing
partial where a later step would read it. The destination keeps its previous version (or stays
absent) and the temp file is removed, for checkpoint.pt, metrics.csv, summary.json,
gradcheck.json and the report's CSVs and HTML; a training run that hits it fails in one line
and resumes once there is space again. Injected two ways: a patched writer (ENOSPC raised after
half of the temp file is written) and, as root, a real tmpfs too small for the next checkpoint.
"""

import errno
import itertools
import os
import shutil
import subprocess
import sys

import pytest
import report_fixtures as fx
from conftest import REPO
from faultinject import WriteFault, raise_enospc
from faultlib import (
    ENV,
    FAULTINJECT,
    TINY,
    error_lines,
    inject,
    interrupted_cell,
    metrics_rows,
    read_json,
    reference_cell,
    results,
    temp_files,
    train_argv,
)
from pipeline_helpers import checkout, snakemake

import report.atomic
from densenet import atomic, celldir, checkpoint
from report.cli import main as report_main

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import publish_report  # noqa: E402  (workflow/scripts is not a package)


def fill_disk(monkeypatch, module, name):
    """The next atomic write of `name` through `module` fails with ENOSPC half-way."""
    monkeypatch.setattr(module, "write_bytes", module.write_bytes)  # undone after the test
    monkeypatch.setattr(module, "os", module.os)
    WriteFault(module, name, 1, "during", raise_enospc)


def rows(n):
    return [dict(dict.fromkeys(celldir.METRIC_COLUMNS, 0.5), epoch=e) for e in range(1, n + 1)]


# file -> writer(cell dir, version): the production call that writes that file.
WRITERS = {
    "checkpoint.pt": lambda d, v: checkpoint.save(os.path.join(d, "checkpoint.pt"), {"epoch": v}),
    "metrics.csv": lambda d, v: celldir.Cell(d).write_metrics(rows(v)),
    "summary.json": lambda d, v: atomic.write_json(
        os.path.join(d, "summary.json"), celldir.summary("completed", {}, rows(v), 1.0, None)
    ),
}


@pytest.mark.parametrize("previous", [True, False], ids=["over-previous", "new-file"])
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_enospc_leaves_the_previous_version_and_no_temp_file(name, previous, tmp_path, monkeypatch):
    cell = str(tmp_path)
    write = WRITERS[name]
    if previous:
        write(cell, 1)
    before = sorted(os.listdir(cell))
    old = open(os.path.join(cell, name), "rb").read() if previous else None
    fill_disk(monkeypatch, atomic, name)
    with pytest.raises(OSError) as err:
        write(cell, 2)
    assert err.value.errno == errno.ENOSPC
    assert sorted(os.listdir(cell)) == before  # no temp file, nothing new
    if previous:
        assert open(os.path.join(cell, name), "rb").read() == old
    if previous and name == "checkpoint.pt":
        assert checkpoint.load(os.path.join(cell, name)) == {"epoch": 1}  # still verifiable


@pytest.fixture(scope="module")
def rendered_study(tmp_path_factory):
    """A small study (two cells, two envs) and its report, rendered once."""
    root = str(tmp_path_factory.mktemp("diskfull") / "smokestudy")
    manifest = fx.build_smoke_study(root)
    out = os.path.join(root, "report")
    assert report_main(["--manifest", manifest, "--out", out]) == 0
    return manifest, out


def snapshot(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


FINAL_ERRORS = itertools.count(63)  # the fixture's clean cell ends at 62%


def change_the_study(manifest):
    """Rewrite the clean cell (curve and summary) with a final error no render has shown yet.
    A render of the same study would rewrite the report byte for byte, so "the old bytes are
    still there" could not tell a kept version from a rewritten one; after this, a render that
    gets through must change runs.csv, curves.csv and report.html."""
    clean = read_json(manifest)["cells"][0]["params"]
    assert clean["canary"] == "none"
    root = os.path.dirname(manifest)
    fx.write_cell(root, clean, final_err=float(next(FINAL_ERRORS)), identity="cifar10-jpeg75")


@pytest.mark.parametrize("name", ["runs.csv", "curves.csv", "report.html"])
def test_enospc_while_rendering_keeps_the_previous_report(name, rendered_study, monkeypatch):
    manifest, out = rendered_study
    before = snapshot(out)
    change_the_study(manifest)
    fill_disk(monkeypatch, report.atomic, name)
    with pytest.raises(OSError) as err:
        report_main(["--manifest", manifest, "--out", out])
    assert err.value.errno == errno.ENOSPC
    after = snapshot(out)
    assert not temp_files(out)
    assert after[name] == before[name]  # the file being written: untouched
    # report.html goes last, so the page never links to CSVs that were not written.
    assert after["report.html"] == before["report.html"]
    # The control: with space again the same render replaces both, so the equalities above
    # are the previous version kept, not the same bytes written again.
    assert report_main(["--manifest", manifest, "--out", out]) == 0
    again = snapshot(out)
    assert again[name] != before[name] and again["report.html"] != before["report.html"]


def test_enospc_in_the_workflow_render_keeps_the_previous_report(rendered_study, monkeypatch):
    """workflow/scripts/publish_report.py renders into a temp folder swapped in only when the
    renderer succeeds: a renderer dying of ENOSPC (here in a real subprocess, through
    tests/faultinject.py) leaves the published folder as it was and no temp folder."""
    manifest, out = rendered_study
    before, folder = snapshot(out), os.stat(out).st_ino
    change_the_study(manifest)
    real_call = subprocess.call

    def report_on_a_full_disk(argv, **kwargs):
        assert argv[1:3] == ["-m", "report"]
        faulty = [argv[0], FAULTINJECT, "--enospc", "report.html:1", "--", "report"]
        return real_call(faulty + argv[3:], **kwargs)

    monkeypatch.setattr(publish_report.subprocess, "call", report_on_a_full_disk)
    assert publish_report.main(["--manifest", manifest, "--out", out]) != 0
    # The same folder with the same bytes: the renderer wrote the changed study's CSVs before
    # it died, so a render straight into --out would show here.
    assert snapshot(out) == before and os.stat(out).st_ino == folder
    parent = os.path.dirname(out)
    assert not [n for n in os.listdir(parent) if n.startswith(".report-")]
    # The control: with space again, a new folder holding the changed study is swapped in.
    monkeypatch.setattr(publish_report.subprocess, "call", real_call)
    assert publish_report.main(["--manifest", manifest, "--out", out]) == 0
    again = snapshot(out)
    assert os.stat(out).st_ino != folder and sorted(again) == sorted(before)
    assert again["runs.csv"] != before["runs.csv"]
    assert again["report.html"] != before["report.html"]
    assert not [n for n in os.listdir(parent) if n.startswith(".report-")]


@pytest.mark.slow
def test_enospc_on_gradcheck_json_leaves_the_previous_verdict(tmp_path):
    (tmp_path / "gradcheck.json").write_text('{"verdict": "pass", "previous": true}\n')
    res = inject(
        "--enospc", "gradcheck.json:1", "--",
        "densenet", "gradcheck", "--out", tmp_path, "--device", "cpu", "--batch-size", "2",
        "--steps", "1",
    )  # fmt: skip
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write ") and "No space left on device" in last
    assert "Traceback" not in res.stderr  # one line, not a crash
    assert read_json(tmp_path / "gradcheck.json") == {"verdict": "pass", "previous": True}
    assert not temp_files(tmp_path)


def check_failed_on_full_disk(cell, res):
    """A training run that hit ENOSPC on epoch 2's checkpoint: one error line, the cell as it
    was after epoch 1 (checkpoint verifiable), no temp file, summary `failed`."""
    assert res.returncode == 1, res.stderr
    [line] = error_lines(res.stderr)
    assert line.startswith("error: [Errno 28] No space left on device")
    assert res.stderr.strip().splitlines()[-1] == line
    assert checkpoint.load(str(cell / "checkpoint.pt"))["epoch"] == 1
    assert len(metrics_rows(cell / "metrics.csv")) == 1
    assert not temp_files(cell)
    assert read_json(cell / "summary.json")["status"] == "failed"


def check_resumes_after_space_is_freed(cell, reference):
    again = inject("--", *train_argv(cell))
    assert again.returncode == 0, again.stderr
    assert "resuming from %s at epoch 2" % (cell / "checkpoint.pt") in again.stderr
    assert metrics_rows(cell / "metrics.csv") == metrics_rows(reference / "metrics.csv")
    assert results(cell) == results(reference)


@pytest.mark.slow
def test_training_on_a_full_disk_fails_cleanly_and_resumes(tmp_path, tmp_path_factory):
    reference = reference_cell(tmp_path_factory)
    cell = tmp_path / "cell"
    res = inject("--enospc", "checkpoint.pt:2", "--", *train_argv(cell))
    check_failed_on_full_disk(cell, res)
    check_resumes_after_space_is_freed(cell, reference)


TMPFS_SCRIPT = """
mount -t tmpfs -o size="$1" tmpfs "$2" || exit 99
mnt=$2; dest=$3; shift 3
"$@" --out "$mnt/cell"; rc=$?
cp -a "$mnt/cell" "$dest"
exit $rc
"""


@pytest.mark.slow
def test_training_on_a_real_full_tmpfs_fails_cleanly_and_resumes(tmp_path, tmp_path_factory):
    """The same on a real filesystem: a private tmpfs (unshare --mount, gone with the process)
    that holds one checkpoint and a half, so epoch 2's temp checkpoint runs out of space."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here: %s" % probe.stderr.strip())
    reference = reference_cell(tmp_path_factory)
    size = os.path.getsize(str(interrupted_cell(tmp_path_factory) / "checkpoint.pt"))
    limit = size * 3 // 2 + 64 * 1024  # the small files fit; a second checkpoint does not
    mnt, cell = tmp_path / "mnt", tmp_path / "cell"
    mnt.mkdir()
    unshare = ["unshare", "--mount", "--propagation", "private"]
    job = [sys.executable, "-m", "densenet", "train"] + TINY
    argv = unshare + ["sh", "-c", TMPFS_SCRIPT, "sh", str(limit), str(mnt), str(cell)] + job
    res = subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    if res.returncode == 99:
        pytest.skip("cannot mount a tmpfs here: %s" % res.stderr.strip().splitlines()[-1])
    check_failed_on_full_disk(cell, res)
    check_resumes_after_space_is_freed(cell, reference)


# Imported by every Python process started with its folder on PYTHONPATH: Snakemake 8+ runs a
# `run:` block in a child process of its own, so the fault has to be installed there too.
SITECUSTOMIZE = """import os, sys
if os.environ.get("TEST_ENOSPC"):
    sys.path.insert(0, %r)
    import faultinject
    faultinject.install_enospc(os.environ["TEST_ENOSPC"])
"""


@pytest.mark.slow
def test_enospc_on_the_manifest_fails_its_job_and_leaves_no_partial_manifest(tmp_path):
    # The manifest is written by a `run:` block (workflow/rules/report.smk), in a process
    # Snakemake starts: the fault is installed in every process through sitecustomize.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE % os.path.join(REPO, "tests"))
    work = checkout(tmp_path / "repo")
    study = os.path.join(work, "results", "default")
    argv = [sys.executable, "-m", "snakemake", "--cores", "1", "results/default/manifest.json"]
    env = dict(ENV, DENSENET_GIT_SHA="test-sha", TEST_ENOSPC="manifest.json:1")
    env["PYTHONPATH"] = os.pathsep.join([str(hook), REPO])
    res = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    log = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode != 0, log
    assert "No space left on device" in log, log
    assert not os.path.exists(os.path.join(study, "manifest.json")), log
    assert temp_files(study) == []
    # With space again, the same command writes it whole.
    res = snakemake(work, *argv[3:])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert read_json(os.path.join(study, "manifest.json"))["cells"]
