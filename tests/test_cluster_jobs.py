"""What a cluster job is given: the GPUs a scheduler allocated reach a Docker container
(dockerd starts it outside the job's cgroup, so the allocation must be named explicitly), a GPU
job without a GPU never starts, and each job asks SLURM for a time limit from the cost
prediction (workflow/scripts/slurm_resources.py) and memory. No daemon needed: the container
settings are built, not run."""

import argparse
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from helpers.pipeline_helpers import checkout, snakemake_argv

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import docker_runner  # noqa: E402
import gpu_slots  # noqa: E402
import run_cell  # noqa: E402
import slurm_resources  # noqa: E402


@pytest.mark.parametrize(
    "environ, ids",
    [
        # SLURM numbers CUDA_VISIBLE_DEVICES from 0 inside a device cgroup; dockerd needs the
        # node's own index, which SLURM_JOB_GPUS / SLURM_STEP_GPUS give.
        ({"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}, ["3"]),
        ({"SLURM_STEP_GPUS": "5,6", "SLURM_JOB_GPUS": "5,6,7", "CUDA_VISIBLE_DEVICES": "0,1"},
         ["5", "6"]),
        ({"CUDA_VISIBLE_DEVICES": "1"}, ["1"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"SLURM_JOB_GPUS": "", "CUDA_VISIBLE_DEVICES": "2"}, ["2"]),
        ({}, []),
    ],
)  # fmt: skip
def test_inherited_gpus_are_the_nodes_own_ids(environ, ids):
    assert gpu_slots.inherited(environ) == ids


def args(gpu, *command):
    return argparse.Namespace(gpu=gpu, command=list(command))


def test_docker_job_under_inherit_gets_the_allocated_gpu_as_a_device_request():
    gpu = run_cell.docker_gpu(
        args("inherit", "train", "--device", "cuda"),
        None,
        {"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"},
    )
    assert gpu == "3"
    settings = docker_runner.container_settings(
        "img", "img@x", ["python"], "/tmp/c", None, REPO, gpu, None
    )
    (request,) = settings["device_requests"]
    assert request.device_ids == ["3"] and request.capabilities == [["gpu"]]
    two = docker_runner.container_settings(
        "img", "img@x", ["python"], "/tmp/c", None, REPO, "5,6", None
    )
    assert two["device_requests"][0].device_ids == ["5", "6"]


def test_run_docker_hands_the_allocation_to_the_container(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(docker_runner, "run", lambda *a, **k: seen.append(a[5]) or 0)
    monkeypatch.setenv("SLURM_JOB_GPUS", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    argv = ["train", "--device", "cuda"]
    ns = argparse.Namespace(
        gpu="inherit",
        command=argv,
        torch="cpu-2.13.0",
        lock=os.path.join(REPO, "containers", "images.lock.yaml"),
        strict_digests=False,
        threads=1,
        mem_mb=0,
    )
    assert run_cell.run_docker(argv, str(tmp_path), None, ns, None, print) == 0
    assert seen == ["2"]
    monkeypatch.delenv("SLURM_JOB_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="no GPU was allocated"):
        run_cell.run_docker(argv, str(tmp_path), None, ns, None, print)
    assert seen == ["2"]


def test_a_gpu_job_without_an_allocated_gpu_never_starts():
    with pytest.raises(RuntimeError, match="no GPU was allocated"):
        run_cell.docker_gpu(args("inherit", "train", "--device", "cuda"), None, {})
    with pytest.raises(RuntimeError, match="no GPU was allocated"):
        run_cell.docker_gpu(args("inherit", "gradcheck", "--device=cuda"), None, {})
    # Without a scheduler the container starts GPU-less and densenet's preflight skips the
    # cell (tests/test_docker_runner.py); CPU jobs and slot-allocated GPUs are unchanged.
    assert run_cell.docker_gpu(args("none", "gradcheck", "--device=cuda"), None, {}) is None
    assert run_cell.docker_gpu(args("auto", "train", "--device", "cuda"), None, {}) is None
    assert run_cell.docker_gpu(args("inherit", "train", "--device", "cpu"), None, {}) is None
    assert run_cell.docker_gpu(args("auto", "train", "--device", "cuda"), "1", {}) == "1"


def test_runtime_is_the_prediction_with_its_margin_or_the_protocols_default(tmp_path):
    path = tmp_path / "predicted_cost.json"
    path.write_text(json.dumps({"a": {"predicted_s": 600.0}, "b": {"predicted_s": None}}))
    assert slurm_resources.read_predicted(str(path), "a") == 600.0
    assert slurm_resources.read_predicted(str(path), "b") is None
    assert slurm_resources.read_predicted(str(tmp_path / "none.json"), "a") is None
    # 600 s x 1.5 = 15 min, + 10 min of start-up; doubled per retry.
    assert slurm_resources.runtime_minutes(600.0, "paper") == 25
    assert slurm_resources.runtime_minutes(600.0, "paper", attempt=2) == 50
    assert slurm_resources.runtime_minutes(None, "smoke") == 60
    assert slurm_resources.runtime_minutes(None, "paper") == 2880


def test_memory_is_the_predicted_peak_with_its_margin_or_the_devices_default(tmp_path):
    path = tmp_path / "predicted_cost.json"
    path.write_text(
        json.dumps({"a": {"predicted_s": 9.0, "predicted_mem_mb": 1500.2}, "b": {"predicted_s": 9}})
    )
    assert slurm_resources.read_predicted(str(path), "a", "predicted_mem_mb") == 1500.2
    assert slurm_resources.read_predicted(str(path), "b", "predicted_mem_mb") is None
    cpu = {"device": "cpu", "gpu": "auto"}
    # 1500.2 MB x 1.5 + 1000 MB = 3250.3, rounded up; doubled per retry, whatever the device.
    assert slurm_resources.mem_mb(cpu, predicted_mb=1500.2) == 3251
    assert slurm_resources.mem_mb(dict(cpu, device="cuda"), 3, predicted_mb=1500.2) == 4 * 3251
    # No prediction: by device kind (a GPU job unless the device is cpu or GPUs are off).
    assert slurm_resources.mem_mb(cpu) == 4000
    assert slurm_resources.mem_mb(dict(cpu, device="cuda"), attempt=2) == 16000
    assert slurm_resources.mem_mb(dict(cpu, device="auto", gpu="none")) == 4000


@pytest.mark.slow
def test_slurm_profile_asks_for_threads_time_and_memory(tmp_path):
    """A dry run with the shipped profile (no cluster needed): each cell's job asks for
    cpus equal to its threads, the predicted time with its margin, and memory;
    profiles/default is not merged in (its `cores: all` would cap threads)."""
    work = checkout(tmp_path / "repo")
    study = os.path.join(work, "results", "default")
    os.makedirs(study)
    cell = (
        "densenet-bc40-k12.synthetic.aug-on.sgd.torch-2.14.1.cudnn-on.tf32-off.det-off"
        ".canary-none.seed-0"
    )
    with open(os.path.join(study, "predicted_cost.json"), "w") as f:
        json.dump({cell: {"predicted_s": 1200.0, "predicted_mem_mb": 2000.0}}, f)
    argv = snakemake_argv(
        "--profile", "workflow/profiles/slurm", "--workflow-profile", "none", "-n",
        # A dry run alone would cap threads at 1 core.
        "--cores", "8",
        "--config", "runner=venv", "gpu=inherit",
        'axes={"torch": ["2.14.1"], "dataset": ["synthetic"]}',
        "--default-resources",
        "slurm_partition=p", "slurm_account=a",
    )  # fmt: skip
    res = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "profiles/default" not in out
    jobs = out.split("\nrule ")
    train = [j for j in jobs if j.startswith("train_cell") and cell in j]
    assert train, out[-3000:]
    assert "threads: 4" in train[0], train[0]
    # 1200 s x 1.5 = 30 min + 10 min start-up; 2000 MB x 1.5 + 1000 MB.
    assert "runtime=40" in train[0] and "mem_mb=4000" in train[0], train[0]
    # Gradient checks and probes have no prediction: the GPU default.
    gradcheck = [j for j in jobs if j.startswith("check_gradients")]
    assert gradcheck and "mem_mb=8000" in gradcheck[0], gradcheck[0]
    # The cheap rules' jobs stay on the submitting host: tests/test_slurm_study.py counts
    # the SLURM jobs of a real run.
