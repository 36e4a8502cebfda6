"""The pipeline with the docker runner: Snakemake trains a cell and checks its
gradients inside the offline CPU image, env.json records the image, the container's output
is streamed into the job's log; a container that fails (OOM-killed) fails its job, with the
reason and the log tail kept, while Snakemake goes on with --keep-going."""

import os

import pytest
from conftest import read_json
from helpers.dockerlib import CPU_KEY, client_or_skip, cpu_image_or_skip
from helpers.pipeline_helpers import checkout, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.docker]

DOCKER_STUDY = [
    "runner=docker",
    "device=cpu",
    "gpu=none",
    'axes={"model": ["densenet-bc40-k12"], "dataset": ["synthetic"], "augment": ["on"],'
    ' "optimizer": ["sgd"], "torch": ["%s"], "cudnn": ["on"], "tf32": ["off"],'
    ' "deterministic": ["off"], "canary": ["none"], "seed": [0]}' % CPU_KEY,
    'train={"epochs": 1, "n_train": 200, "n_test": 100}',
    'gradcheck={"batch_size": 2, "steps": 1}',
    'report={"progress": false, "predict_cost": false}',
]


@pytest.fixture(scope="module")
def image():
    return cpu_image_or_skip(client_or_skip())


def only(paths):
    assert len(paths) == 1, paths
    return paths[0]


def test_study_trains_in_the_pinned_image(image, tmp_path):
    work = checkout(tmp_path / "repo")
    res = snakemake(work, "--cores", "all", "--config", *DOCKER_STUDY)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = read_json(os.path.join(work, "results/default/manifest.json"))
    cell = only(manifest["cells"])
    summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
    assert summary["status"] == "completed"
    env = read_json(os.path.join(work, cell["dir"], "env.json"))
    assert env["environ"]["torch"].startswith("2.13.0")  # the image's torch, not the host's
    assert env["environ"]["image"]["tag"] == image["tag"]
    assert env["environ"]["image"]["digest"] == image["id"]  # local build: its image ID
    assert env["environ"]["git_sha"] == "test-sha"  # the host's view, passed in
    gradcheck = read_json(os.path.join(work, only(manifest["envs"])["dir"], "gradcheck.json"))
    assert gradcheck["verdict"] == "pass"
    assert gradcheck["environ"]["torch"].startswith("2.13.0")
    with open(os.path.join(work, "results/default/logs/cells/%s.log" % cell["id"])) as f:
        log = f.read()
    assert "epoch 1/1" in log  # the container's progress line, streamed into the job's log


def test_failing_container_fails_its_job_with_the_log_kept(image, tmp_path):
    work = checkout(tmp_path / "repo")
    # 32 MB as the rules' declared memory: every container is OOM-killed at that limit.
    small = ["%s:mem_mb=32" % rule for rule in ("check_gradients", "train_cell")]
    res = snakemake(
        work, "--cores", "all", "--keep-going", "--set-resources", *small, "--config", *DOCKER_STUDY
    )
    assert res.returncode != 0
    manifest = read_json(os.path.join(work, "results/default/manifest.json"))
    env_dir = os.path.join(work, only(manifest["envs"])["dir"])
    failure = read_json(os.path.join(env_dir, "failure.json"))
    assert failure["exit_code"] == 137 and "OOM-killed" in failure["reason"]
    assert not os.path.exists(os.path.join(env_dir, "gradcheck.json"))
    with open(
        os.path.join(work, "results/default/logs/gradcheck/%s.log" % only(manifest["envs"])["id"])
    ) as f:
        assert "OOM-killed" in f.read()  # visible where Snakemake points the user
    assert "Error in rule check_gradients" in res.stdout + res.stderr
