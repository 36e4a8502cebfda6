"""The venv runner (runner: venv): one Python environment per torch key of
containers/venvs.lock.yaml, built once by the workflow's build_runner_env rule, cells run in it
as plain processes (no daemon: on a cluster they stay inside the job's allocation).

The end-to-end test (marked `venv`) builds two real environments through the workflow, Python
3.11 + torch 2.14.1 and Python 3.8 + torch 1.8.1 (the pins of scripts/oldest_torch.sh; pip's
cache makes a second build fast), and runs a clean + canary study in both with
`snakemake --cores all`. It needs a Python 3.8 interpreter (python3.8 on PATH or pyenv's);
CI sets REQUIRE_VENV=1, which makes its absence a failure."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_MODEL, read_json
from helpers.pipeline_helpers import checkout, job_counts, snakemake

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import runner_env  # noqa: E402

LOCK = os.path.join(REPO, "containers", "venvs.lock.yaml")
RUN_CELL = os.path.join(REPO, "workflow", "scripts", "run_cell.py")
TINY = [
    'train={"epochs": 1, "n_train": 128, "n_test": 64, "threads": 1}',
    'gradcheck={"batch_size": 2, "steps": 1}',
]


def write_lock(tmp_path, text):
    path = tmp_path / "venvs.lock.yaml"
    path.write_text(text)
    return str(path)


def test_the_shipped_lock_pins_every_requirement_and_the_oldest_pair():
    venvs = runner_env.read_lock(LOCK)
    for key in venvs:
        entry = runner_env.read_entry(LOCK, key)
        assert any(r.startswith("torch==%s" % key) for r in entry["requirements"]), entry
    # The same pair as scripts/oldest_torch.sh.
    with open(os.path.join(REPO, "scripts", "oldest_torch.sh")) as f:
        script = f.read()
    oldest = runner_env.read_entry(LOCK, "1.8.1")
    assert oldest["python"] == "3.8"
    assert " ".join(oldest["requirements"]) in script


@pytest.mark.parametrize(
    "entry, problem",
    [
        ('"1.0": {python: "3.11", requirements: [torch>=1.0]}', "is not pinned"),
        ('"1.0": {python: 3, requirements: [torch==1.0]}', "python must be a version"),
        ('"1.0": {python: "3.11", requirements: []}', "requirements must be a list"),
        ('"2.0": {python: "3.11", requirements: [torch==2.0]}', "has no environment for torch"),
    ],
)
def test_bad_lock_entries_are_one_line_naming_the_file(tmp_path, entry, problem):
    path = write_lock(tmp_path, "venvs:\n  %s\n" % entry)
    with pytest.raises(runner_env.EnvError) as err:
        runner_env.read_entry(path, "1.0")
    assert problem in str(err.value) and path in str(err.value)
    assert "\n" not in str(err.value)


def test_find_python_takes_the_named_interpreter_and_refuses_another_version(tmp_path):
    here = "%d.%d" % sys.version_info[:2]
    var = "DENSENET_PYTHON_" + here.replace(".", "")
    assert runner_env.find_python(here, {var: sys.executable}) == sys.executable
    with pytest.raises(runner_env.EnvError, match="is not a Python 3.1"):
        runner_env.find_python("3.1", {"DENSENET_PYTHON_31": sys.executable})
    with pytest.raises(runner_env.EnvError, match="no Python 3.1 interpreter"):
        runner_env.find_python("3.1", {"PATH": str(tmp_path), "PYENV_ROOT": str(tmp_path)})


def fake_env(folder, key="9.9"):
    """A venv-runner environment whose python is this interpreter (no build needed)."""
    env_dir = folder / key
    (env_dir / "bin").mkdir(parents=True)
    python = env_dir / "bin" / "python"
    python.write_text('#!/bin/sh\nexec %s "$@"\n' % sys.executable)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (env_dir / runner_env.MARKER).write_text(json.dumps({"key": key}))
    return env_dir


def run_cell(*args):
    return subprocess.run(
        [sys.executable, RUN_CELL] + [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_venv_runner_runs_the_environment_python(tmp_path):
    env_dir = fake_env(tmp_path / "venvs")
    cell = tmp_path / "cell"
    res = run_cell(
        "--runner", "venv", "--torch", "9.9", "--venv-dir", tmp_path / "venvs",
        "--cell-dir", cell, "--gpu", "none", "--", "gradcheck", "--model", "densenet-bc40-k12",
        "--batch-size", "2", "--steps", "1", "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "run_cell: %s -m densenet gradcheck" % (env_dir / "bin" / "python") in res.stdout
    assert read_json(cell / "gradcheck.json")["verdict"] == "pass"


def test_venv_runner_without_a_built_environment_fails_naming_the_rule(tmp_path):
    cell = tmp_path / "cell"
    res = run_cell(
        "--runner", "venv", "--torch", "9.9", "--venv-dir", tmp_path / "none",
        "--cell-dir", cell, "--", "env",
    )  # fmt: skip
    assert res.returncode == 1
    failure = read_json(cell / "failure.json")
    assert "build_runner_env" in failure["reason"] and failure["runner"] == "venv"


@pytest.fixture(scope="module")
def python38():
    try:
        return runner_env.find_python("3.8")
    except runner_env.EnvError as exc:
        if os.environ.get("REQUIRE_VENV") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.mark.venv
@pytest.mark.slow
def test_two_torch_versions_study_in_venvs_end_to_end(tmp_path, python38):
    work = checkout(tmp_path / "repo")
    venvs = tmp_path / "venvs"
    config = [
        "runner=venv",
        "study=versions",
        'axes={"torch": ["2.14.1", "1.8.1"], "dataset": ["synthetic"], "model": ["%s"]}'
        % TINY_MODEL,
        'containers={"venv_dir": "%s"}' % venvs,
        # The cost probes time real steps: minutes per environment on a CPU.
        'report={"predict_cost": false}',
    ] + TINY
    start = time.perf_counter()
    res = snakemake(work, "--cores", "all", "--config", *config, timeout=1800)
    took = time.perf_counter() - start
    print("two-version venv study, environments built: %.0f s" % took)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = job_counts(res.stdout + res.stderr)
    assert counts["build_runner_env"] == 2 and counts["train_cell"] == 4, counts
    study = os.path.join(work, "results", "versions")
    manifest = read_json(os.path.join(study, "manifest.json"))
    expect = {"2.14.1": ("3.11.", "2.14.1"), "1.8.1": ("3.8.", "1.8.1")}
    seen = set()
    for cell in manifest["cells"]:
        p = cell["params"]
        summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
        assert summary["status"] == "completed", summary
        environ = read_json(os.path.join(work, cell["dir"], "env.json"))["environ"]
        python, torch = expect[p["torch"]]
        assert environ["python"].startswith(python), environ
        assert environ["torch"].startswith(torch), environ
        seen.add((p["torch"], p["canary"]))
    assert seen == {(t, c) for t in expect for c in ("none", "noncontig-grad")}
    for env in manifest["envs"]:
        verdict = read_json(os.path.join(work, env["dir"], "gradcheck.json"))["verdict"]
        assert verdict == ("pass" if env["params"]["canary"] == "none" else "fail"), env
    # The report compares the versions: one environment row per torch, each run tagged.
    runs = open(os.path.join(study, "report", "runs.csv")).read()
    assert runs.count(",2.14.1") >= 2 and runs.count(",1.8.1") >= 2, runs
    with open(os.path.join(study, "report", "report.html")) as f:
        html = f.read()
    for torch in ("2.14.1", "1.8.1"):
        assert "<tr><td>%s" % torch in html
    # A second build is a no-op: the markers are there.
    again = snakemake(work, "--cores", "all", "--config", *config)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
