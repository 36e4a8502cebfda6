"""Docker faults: a failing container, an OOM kill, a missing or unpinned image, no
daemon, an interrupt. Each ends the cell as documented: `failed` with the reason and the log
tail in failure.json, or (interrupt) no verdict at all and no container left behind."""

import importlib
import os
import shutil
import signal
import time

import pytest
from conftest import read_json
from helpers.dockerlib import (
    LOCK,
    REPO,
    TINY,
    client_or_skip,
    containers_of,
    cpu_image_or_skip,
    run_cell,
    start_cell,
    wait_for_container,
)

docker_runner = importlib.import_module("docker_runner")  # dockerlib put it on sys.path


@pytest.fixture(scope="module")
def client():
    return client_or_skip()


@pytest.fixture(scope="module")
def cpu_image(client):
    return cpu_image_or_skip(client)


@pytest.fixture
def cell(tmp_path):
    return str(tmp_path / "cell")


def failure(cell):
    record = read_json(os.path.join(cell, "failure.json"))
    assert record["status"] == "failed" and record["runner"] == "docker"
    return record


@pytest.mark.docker
def test_bad_arguments_fail_the_job_with_exit_code_and_log(client, cpu_image, cell):
    code, out = run_cell(cell, ["train", "--model", "densenet-bc40-k12", "--optimizer", "sgdx"])
    assert code == 2, out
    record = failure(cell)
    assert record["exit_code"] == 2
    assert any(
        "argument --optimizer: invalid choice: 'sgdx'" in line for line in record["log_tail"]
    )
    assert "invalid choice: 'sgdx'" in out
    assert containers_of(client, cell) == []


@pytest.mark.docker
def test_training_error_in_container_fails_the_job(client, cpu_image, cell):
    # cifar10 asked for, an empty data dir given: densenet fails (exit 1) with a reason.
    data = os.path.join(os.path.dirname(cell), "nodata")
    os.makedirs(data)
    args = ["train", "--model", "densenet-bc40-k12", "--dataset", "cifar10", "--device", "cpu"]
    code, out = run_cell(cell, args, extra=["--data-dir", data])
    assert code == 1, out
    record = failure(cell)
    assert record["exit_code"] == 1
    assert record["reason"].startswith("dataset cifar10:")
    assert any(line.startswith("error: dataset cifar10:") for line in record["log_tail"])


@pytest.mark.docker
def test_oom_killed_container_is_named_as_such(client, cpu_image, cell):
    # 32 MiB cannot even import torch: the kernel kills the job inside its cgroup. (Near 64 MiB
    # the job thrashes on page cache for a minute before the kill.)
    code, out = run_cell(cell, ["train"] + TINY, extra=["--mem-mb", "32"])
    assert code != 0, out
    record = failure(cell)
    assert record["exit_code"] == 137
    assert "OOM-killed" in record["reason"] and "32m" in record["reason"]
    assert containers_of(client, cell) == []


@pytest.mark.docker
def test_oom_kill_is_an_error_with_exit_code_137(client, cpu_image, cell):
    image = dict(cpu_image, lock=LOCK, strict=False)
    argv = ["python", "-m", "densenet", "train"] + TINY + ["--out", "/cell"]
    with pytest.raises(docker_runner.RunnerError) as caught:
        docker_runner.run(image, argv, cell, None, REPO, None, print, mem_limit="32m")
    assert caught.value.exit_code == 137
    assert "OOM-killed" in str(caught.value)
    assert containers_of(client, cell) == []


# GPUs reach docker by UUID (workflow/scripts/gpu_slots.py): the slot and the device agree.
GPU_UUID = "GPU-00000000-0000-0000-0000-000000000000"


def lock_file(cell, text):
    path = os.path.join(os.path.dirname(cell), "images.lock.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.docker
def test_missing_local_image_fails_with_the_fix(client, cell):
    lock = lock_file(
        cell,
        "images:\n  nothere:\n    tag: densenet-missing:0\n"
        "    digest: null\n    build: containers/cpu/build.sh\n",
    )
    code, out = run_cell(cell, ["train"] + TINY, key="nothere", extra=["--lock", lock])
    assert code != 0, out
    reason = failure(cell)["reason"]
    assert "densenet-missing:0" in reason and "containers/cpu/build.sh" in reason
    assert "\n" not in reason


@pytest.mark.docker
def test_strict_mode_refuses_an_unpinned_image(client, cell):
    lock = lock_file(
        cell,
        'images:\n  "2.5.1":\n'
        "    tag: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime\n"
        "    digest: null\n",
    )
    code, out = run_cell(
        cell, ["train"] + TINY, key="2.5.1", extra=["--lock", lock, "--strict-digests"]
    )
    assert code != 0, out
    reason = failure(cell)["reason"]
    assert "strict mode refuses unpinned images" in reason and "2.5.1" in reason
    assert "pulling" not in out  # refused before any pull


def test_no_daemon_fails_the_cell_in_one_line(cell):
    gone = "unix://%s/no-dockerd.sock" % cell
    code, out = run_cell(cell, ["train"] + TINY, env={"DOCKER_HOST": gone})
    assert code != 0, out
    reason = failure(cell)["reason"]
    assert "docker daemon not reachable at %s" % gone in reason
    assert "\n" not in reason


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_removes_the_container_and_leaves_no_verdict(client, cpu_image, cell, signum):
    args = ["train"] + TINY[: TINY.index("--epochs")] + ["--epochs", "20", "--device", "cpu"]
    proc = start_cell(cell, args)
    wait_for_container(client, cell, lambda: proc.poll() is not None)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    # The runner re-delivers the signal after cleanup, so the caller ends as it would without
    # the runner: killed by it, or (run_cell catches KeyboardInterrupt) exit 128 + signal.
    assert proc.returncode in (-signum, 128 + signum), out
    assert containers_of(client, cell) == []
    assert not os.path.exists(os.path.join(cell, "failure.json"))
    assert not os.path.exists(os.path.join(cell, "summary.json"))


@pytest.mark.docker
def test_gpu_job_on_a_host_without_gpu_runtime_fails_with_the_reason(client, cpu_image, cell):
    # The DeviceRequest reaches the daemon; with no NVIDIA runtime it refuses to start.
    image = dict(cpu_image, lock=LOCK, strict=False)
    argv = ["python", "-m", "densenet", "train"] + TINY[:-1] + ["cuda", "--out", "/cell"]
    # dockerd serves GPU requests through this hook, or through a registered nvidia runtime.
    if shutil.which("nvidia-container-runtime-hook") or "nvidia" in client.info()["Runtimes"]:
        pytest.skip("this host has the NVIDIA Container Toolkit")
    with pytest.raises(docker_runner.RunnerError) as caught:
        docker_runner.run(image, argv, cell, None, REPO, GPU_UUID, print)
    assert "NVIDIA Container Toolkit" in str(caught.value)
    assert caught.value.exit_code == 125
    assert containers_of(client, cell) == []


@pytest.mark.docker
@pytest.mark.slow
def test_sigkilled_runner_leaves_no_container_running(client, cpu_image, cell):
    # SIGKILL cannot be caught: the watcher started beside the container removes it once the
    # runner's end of their pipe closes.
    args = ["train"] + TINY[: TINY.index("--epochs")] + ["--epochs", "20", "--device", "cpu"]
    proc = start_cell(cell, args)
    container = wait_for_container(client, cell, lambda: proc.poll() is not None)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.time() + 30
    while containers_of(client, cell) and time.time() < deadline:
        time.sleep(0.5)
    assert containers_of(client, cell) == [], container.name
