"""The local runner (workflow/scripts/run_cell.py): failure.json on failures, 0 on results,
host identity passed in, interruption leaves a resumable cell; the GPU slot allocator."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, read_json, tiny_cell

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import gpu_slots  # noqa: E402

RUN_CELL = os.path.join(REPO, "workflow", "scripts", "run_cell.py")
TINY = tiny_cell(128, 64)


def run_cell(*args, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(
        [sys.executable, RUN_CELL] + [str(a) for a in args], cwd=REPO, timeout=600, **kwargs
    )


def test_failed_job_writes_failure_json(tmp_path):
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "summary.json").write_text('{"status": "completed"}')  # stale: must not count
    res = run_cell(
        "--runner",
        "local",
        "--torch",
        "local",
        "--cell-dir",
        cell,
        "--data-dir",
        tmp_path / "nodata",
        "--",
        "train",
        "--model",
        "densenet-bc40-k12",
        "--device",
        "cpu",
    )
    assert res.returncode == 1
    failure = read_json(cell / "failure.json")
    assert failure["status"] == "failed" and failure["exit_code"] == 1
    assert failure["runner"] == "local"
    assert "data_batch_1" in failure["reason"]
    assert any(line.startswith("error: dataset cifar10") for line in failure["log_tail"])
    assert "error: dataset cifar10" in res.stdout  # the log is streamed too


def test_docker_runner_unknown_image_is_a_failure(tmp_path):
    res = run_cell(
        "--runner",
        "docker",
        "--torch",
        "9.9.9",
        "--cell-dir",
        tmp_path,
        "--",
        "gradcheck",
        "--model",
        "densenet-bc40-k12",
    )
    assert res.returncode != 0
    failure = read_json(tmp_path / "failure.json")
    assert "has no image for torch '9.9.9'" in failure["reason"]
    assert failure["runner"] == "docker"


def test_runner_owns_out_and_data_dir(tmp_path):
    res = run_cell(
        "--runner",
        "local",
        "--torch",
        "local",
        "--cell-dir",
        tmp_path,
        "--",
        "train",
        "--out",
        tmp_path,
    )
    assert res.returncode == 2 and "--out is set by the runner" in res.stderr


@pytest.mark.slow
def test_completed_cell_exits_0_with_host_identity(tmp_path):
    env = dict(os.environ, DENSENET_HOST="test-host", DENSENET_GIT_SHA="0123abcd")
    cell = tmp_path / "cell"
    res = run_cell(
        "--runner",
        "local",
        "--torch",
        "local",
        "--cell-dir",
        cell,
        "--gpu",
        "none",
        "--threads",
        "1",
        "--",
        "train",
        "--epochs",
        "1",
        *TINY,
        env=env,
    )
    assert res.returncode == 0, res.stdout
    assert read_json(cell / "summary.json")["status"] == "completed"
    assert not (cell / "failure.json").exists()
    environ = read_json(cell / "env.json")["environ"]
    assert (environ["host"], environ["git_sha"]) == ("test-host", "0123abcd")
    assert environ["torch_threads"] == 1  # --threads reached torch through OMP_NUM_THREADS


@pytest.mark.slow
def test_interrupted_runner_leaves_a_resumable_cell(tmp_path):
    cell = tmp_path / "cell"
    proc = subprocess.Popen(
        [
            sys.executable,
            RUN_CELL,
            "--runner",
            "local",
            "--torch",
            "local",
            "--cell-dir",
            str(cell),
            "--threads",
            "1",
            "--",
            "train",
            "--epochs",
            "50",
            *TINY,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("epoch 1/50"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "can resume from its checkpoint" in rest
    assert (cell / "checkpoint.pt").exists() and (cell / "metrics.csv").exists()
    assert not (cell / "failure.json").exists() and not (cell / "summary.json").exists()


def test_gpu_slots_one_gpu_per_job(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSENET_GPU_LOCK_DIR", str(tmp_path))
    notes, got = [], []
    with gpu_slots.claim("auto", notes.append, gpus=["0", "1"]) as a:
        with gpu_slots.claim("auto", notes.append, gpus=["0", "1"]) as b:
            assert {a, b} == {"0", "1"}

            def third():
                with gpu_slots.claim("auto", notes.append, poll_s=0.05, gpus=["0", "1"]) as c:
                    got.append(c)

            waiter = threading.Thread(target=third)
            waiter.start()
            time.sleep(0.5)
            assert got == [] and any("waiting" in n for n in notes)  # both GPUs taken
        waiter.join(10)
        assert got == [b]  # the GPU released first goes to the waiting job


def test_gpu_slots_policies(monkeypatch, tmp_path):
    monkeypatch.setenv("DENSENET_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_slots.host_gpus() == ["3", "5"]
    with gpu_slots.claim("auto", lambda _: None) as gpu:
        assert gpu == "3"
    for policy in ("none", "inherit"):
        with gpu_slots.claim(policy, lambda _: None) as gpu:
            assert gpu is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with gpu_slots.claim("auto", lambda _: None) as gpu:
        assert gpu is None  # no GPU: the job runs on the CPU


def test_bench_probe_is_a_file_result(tmp_path):
    import run_cell as runner

    assert runner.out_path("bench", "/cell") == "/cell/probe.json"
    assert runner.out_path("train", "/cell") == "/cell"
    assert runner.outcome("bench", str(tmp_path)) == (False, "no probe.json was written")
    (tmp_path / "probe.json").write_text('{"models": {}}')
    assert runner.outcome("bench", str(tmp_path))[0]
    (tmp_path / "gradcheck.json").write_text('{"max_rel_err": 1}')
    assert runner.outcome("gradcheck", str(tmp_path)) == (False, "gradcheck.json has no verdict")
