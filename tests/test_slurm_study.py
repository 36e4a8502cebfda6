"""A study through SLURM: `snakemake --profile workflow/profiles/slurm` on the single-node test
cluster (tests/helpers/slurm_cluster.py, two fake GPUs), with the venv runner in this
environment's torch (an environment folder whose python is this interpreter: nothing to
build) and the profile's placeholders replaced by the cluster's partition and account.

Every gradient check, cost probe and cell is a SLURM job with the GPU it asked for (the
fake GPUs give no CUDA device, so the cells train on the CPU), the cheap rules and the report
run on the submitting host, the cells of the study's first invocation ask SLURM for the time
and memory their prediction (made in that same invocation) gives, a one-cell rerun goes
through SLURM too, and a cell job cancelled with scancel resumes from its checkpoint when the
same command runs again. Tiny cells, one thread each."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, TINY_MODEL, read_json
from helpers.pipeline_helpers import checkout, job_counts

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import runner_env  # noqa: E402
import slurm_resources  # noqa: E402

TORCH = "2.14.1"  # a key of containers/venvs.lock.yaml; the environment is this interpreter's
SUBMITTED = re.compile(r"SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/")


@pytest.fixture
def slurm(slurm_cluster):
    yield slurm_cluster
    slurm_cluster.cancel_all()


def local_env(venv_dir):
    """venv_dir/TORCH as the venv runner expects it, running this interpreter."""
    env_dir = os.path.join(venv_dir, TORCH)
    os.makedirs(os.path.join(env_dir, "bin"))
    python = os.path.join(env_dir, "bin", "python")
    with open(python, "w") as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % sys.executable)
    os.chmod(python, 0o755)
    import torch

    marker = {"key": TORCH, "python": sys.version.split()[0], "torch": torch.__version__}
    with open(os.path.join(env_dir, runner_env.MARKER), "w") as f:
        json.dump(marker, f)


def study_file(
    work,
    name,
    seeds,
    epochs,
    n_train,
    canary=("none", "noncontig-grad"),
    predict_cost=False,
    model=TINY_MODEL,
):
    """A study file (every key of config/config.yaml) for the cluster: synthetic data, the
    venv runner's environment of TORCH, tiny cells of one thread; cost probes (a few real
    steps per environment) only where `predict_cost`."""
    with open(os.path.join(REPO, "config", "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["study"] = name
    cfg["axes"].update(torch=[TORCH], dataset=["synthetic"], seed=seeds, canary=list(canary))
    cfg["axes"]["model"] = [model]
    cfg["train"].update(epochs=epochs, n_train=n_train, n_test=64, threads=1)
    cfg["gradcheck"].update(batch_size=2, steps=1)
    cfg["report"]["predict_cost"] = predict_cost
    cfg["containers"]["venv_dir"] = os.path.join(work, ".venvs")
    path = os.path.join(work, "config", "studies", "%s.yaml" % name)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return os.path.relpath(path, work)


def command(slurm, configfile, *targets):
    """The README's cluster command, with this cluster's partition and account, quicker
    status queries, and one thread per job (the node has few cores)."""
    return [
        sys.executable, "-m", "snakemake",
        "--profile", "workflow/profiles/slurm", "--workflow-profile", "none",
        "--configfile", configfile,
        "--default-resources", "slurm_partition=%s" % slurm.partition, "slurm_account=root",
        "--set-threads", "train_cell=1", "check_gradients=1", "probe_cost=1",
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5",
    ] + list(targets)  # fmt: skip


def run(slurm, work, argv, timeout=600):
    env = dict(slurm.env, DENSENET_GIT_SHA="test-sha")
    start = time.perf_counter()
    res = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    print("%s: %.0f s" % (" ".join(argv[3:]), time.perf_counter() - start))
    return res.returncode, out


def submitted(out):
    """{SLURM job id: rule} of the jobs a snakemake run submitted."""
    return {m.group(1): m.group(2) for m in SUBMITTED.finditer(out)}


def accounting(slurm, jobids):
    """{job id: (State, AllocTRES)} from sacct, once every job has its final row."""
    rows = {}
    for jobid in jobids:
        row = slurm.wait_sacct(jobid, lambda r: r["State"] not in ("PENDING", "RUNNING"))
        rows[jobid] = (row["State"], row["AllocTRES"])
    return rows


@pytest.fixture(scope="module")
def cluster_study(slurm_cluster, tmp_path_factory):
    """The smoke study (clean + canary, 2 seeds) run through SLURM: first its gradient stage
    alone (`--until check_gradients`, as a user checks the environments before training),
    then the study, whose cost is predicted in that same invocation. Returns the checkout, the
    study file, both runs' output and the second run's."""
    work = checkout(tmp_path_factory.mktemp("slurm-study") / "repo")
    local_env(os.path.join(work, ".venvs"))
    configfile = study_file(work, "cluster", [0, 1], epochs=1, n_train=128, predict_cost=True)
    argv = command(slurm_cluster, configfile)
    code, first = run(slurm_cluster, work, argv + ["--until", "check_gradients"])
    assert code == 0, first[-4000:]
    assert sorted(submitted(first).values()) == ["check_gradients"] * 2, first
    code, out = run(slurm_cluster, work, argv)
    assert code == 0, out[-4000:]
    return work, configfile, first + out, out


def test_every_job_of_the_study_is_a_slurm_job_with_its_gpu(slurm, cluster_study):
    work, _, out, study_out = cluster_study
    jobs = submitted(out)
    rules = sorted(jobs.values())
    # 4 cells, 2 gradient checks and 2 cost probes; the manifest, the prediction and the
    # report stay on the submitting host.
    assert rules == ["check_gradients"] * 2 + ["probe_cost"] * 2 + ["train_cell"] * 4, out
    for jobid, (state, tres) in accounting(slurm, jobs).items():
        assert state == "COMPLETED", (jobid, jobs[jobid], state)
        assert "gres/gpu=1" in tres.split(","), (jobid, tres)
    assert job_counts(study_out).get("write_manifest") == 1
    assert job_counts(study_out).get("predict_cost") == 1
    study = os.path.join(work, "results", "cluster")
    manifest = read_json(os.path.join(study, "manifest.json"))
    assert len(manifest["cells"]) == 4
    for cell in manifest["cells"]:
        summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
        assert summary["status"] == "completed", summary
        environ = read_json(os.path.join(work, cell["dir"], "env.json"))["environ"]
        assert environ["torch"].startswith(TORCH)
    assert os.path.exists(os.path.join(study, "report", "report.html"))
    assert job_counts(study_out).get("render_final_report") == 1


def test_a_gpu_cell_job_shows_its_gres_in_accounting(slurm, cluster_study):
    work, _, out, _ = cluster_study
    cell = [j for j, rule in submitted(out).items() if rule == "train_cell"][0]
    row = slurm.wait_sacct(cell, lambda r: r["State"] == "COMPLETED", fields="JobID,State,ReqTRES")
    assert "gres/gpu=1" in row["ReqTRES"].split(","), row


def minutes(timelimit):
    """sacct's Timelimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = timelimit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + s / 60.0


def test_first_invocation_submits_cells_with_their_predicted_limits(slurm, cluster_study):
    """The prediction is made by the same snakemake run that submits the cells; each cell's
    job still asks for its predicted time and memory with their margins, not the smoke
    protocol's defaults (60 min; 8000 MB for a job that may get a GPU). The gradient checks
    ran before, so the cells' other inputs are there from the start: had they not waited for
    the prediction, they would have been submitted at once, beside the cost probes."""
    work, _, out, _ = cluster_study
    predicted = read_json(os.path.join(work, "results", "cluster", "predicted_cost.json"))
    manifest = read_json(os.path.join(work, "results", "cluster", "manifest.json"))
    ids = [c["id"] for c in manifest["cells"]]
    assert sorted(predicted) == sorted(ids)
    cells = [j for j, rule in submitted(out).items() if rule == "train_cell"]
    assert len(cells) == 4
    asked = {}
    for jobid in cells:
        row = slurm.wait_sacct(
            jobid, lambda r: r["State"] == "COMPLETED", fields="JobID,State,Timelimit,ReqMem"
        )
        asked[jobid] = (minutes(row["Timelimit"]), row["ReqMem"])
    cfg = {"device": "auto", "gpu": "inherit"}  # the study's device, the profile's GPU policy
    want = sorted(
        (
            slurm_resources.runtime_minutes(predicted[c]["predicted_s"], "smoke"),
            "%dM" % slurm_resources.mem_mb(cfg, predicted_mb=predicted[c]["predicted_mem_mb"]),
        )
        for c in ids
    )
    assert sorted(asked.values()) == want, (asked, predicted)
    defaults = (slurm_resources.runtime_minutes(None, "smoke"), "%dM" % slurm_resources.mem_mb(cfg))
    assert all(a != defaults[0] for a, _ in want) and all(m != defaults[1] for _, m in want), want


def test_one_cell_rerun_goes_through_slurm(slurm, cluster_study):
    work, configfile, _, _ = cluster_study
    manifest = read_json(os.path.join(work, "results", "cluster", "manifest.json"))
    summary = os.path.join(manifest["cells"][0]["dir"], "summary.json")
    before = os.stat(os.path.join(work, summary)).st_mtime_ns
    code, out = run(slurm, work, command(slurm, configfile, summary, "-f"))
    assert code == 0, out[-4000:]
    jobs = submitted(out)
    assert list(jobs.values()) == ["train_cell"], out
    assert accounting(slurm, jobs)[list(jobs)[0]][0] == "COMPLETED"
    assert os.stat(os.path.join(work, summary)).st_mtime_ns > before


def test_cancelled_cell_job_resumes_from_its_checkpoint(slurm, tmp_path):
    work = checkout(tmp_path / "repo")
    local_env(os.path.join(work, ".venvs"))
    # The default study's model: its epochs take long enough to catch the job mid-way.
    configfile = study_file(
        work, "resume", [0], epochs=4, n_train=192, canary=["none"], model="densenet-bc40-k12"
    )
    argv = command(slurm, configfile)
    env = dict(slurm.env, DENSENET_GIT_SHA="test-sha")
    with open(tmp_path / "first.out", "w") as log:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Wait until a cell has a checkpoint (an epoch done) and its job still runs.
        cells = os.path.join(work, "results", "resume", "cells")
        deadline = time.monotonic() + 300
        target = None
        while target is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            for cell in os.listdir(cells) if os.path.isdir(cells) else []:
                d = os.path.join(cells, cell)
                if os.path.exists(os.path.join(d, "checkpoint.pt")) and not os.path.exists(
                    os.path.join(d, "summary.json")
                ):
                    target = cell
        assert target, (tmp_path / "first.out").read_text()[-3000:]
        jobs = submitted((tmp_path / "first.out").read_text())
        running = slurm.run("squeue", "-h", "-t", "RUNNING", "-o", "%i").stdout.split()
        cell_jobs = [j for j in running if jobs.get(j) == "train_cell"]
        assert len(cell_jobs) == 1, (running, jobs)
        slurm.run("scancel", cell_jobs[0])
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(os.path.join(cells, target, "summary.json"))
    assert os.path.exists(os.path.join(cells, target, "checkpoint.pt"))
    code, out = run(slurm, work, argv)
    assert code == 0, out[-4000:]
    assert list(submitted(out).values()) == ["train_cell"], out
    with open(os.path.join(work, "results", "resume", "logs", "cells", target + ".log")) as f:
        text = f.read()
    assert "resuming from" in text, text[-3000:]
    summary = read_json(os.path.join(cells, target, "summary.json"))
    assert summary["status"] == "completed" and summary["epochs_done"] == 4
