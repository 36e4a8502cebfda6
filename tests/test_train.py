"""Trainer: learns on real data, resumes after kill -9 bit-identically, diverges cleanly,
records which step --fast on falls back to on the CPU, one-line usage errors."""

import os

import pytest
from conftest import densenet, read_json
from helpers.trainlib import TINY, kill9_in_epoch_2_then_resume, read_metrics

from densenet.recipe import lr_at


def test_lr_schedules():
    # lua (the default, the Lua code's `epoch >= 0.5*nEpochs`): 150 and 225 are the first
    # epochs at the lower rate; chainer drops after them.
    epochs = (1, 149, 150, 151, 224, 225, 226, 300)
    assert [lr_at(e, 300, 0.1) for e in epochs] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001], rel=1e-12
    )
    assert [lr_at(e, 300, 0.1, "chainer") for e in epochs] == pytest.approx(
        [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001], rel=1e-12
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "resnet50"], "argument --model: invalid choice: 'resnet50'"),
        (["--model", "densenet40-k12", "--cudnn", "maybe"], "argument --cudnn: invalid choice"),
        (["--model", "densenet40-k12", "--epochs", "0"], "argument --epochs: expected a positive"),
        (
            ["--model", "densenet40-k12", "--protocol", "long"],
            "argument --protocol: invalid choice",
        ),
        (
            ["--model", "densenet-bc40-k12", "--compile", "on", "--efficient", "on"],
            "argument --compile: 'on' does not combine with --efficient on",
        ),
    ],
)
def test_bad_arguments_exit_2_one_line(tmp_path, args, fragment):
    res = densenet("train", "--out", tmp_path, *args)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert fragment in res.stderr


def test_missing_data_fails_with_one_line(tmp_path):
    res = densenet(
        "train",
        "--out",
        tmp_path / "cell",
        "--model",
        "densenet-bc40-k12",
        "--data-dir",
        tmp_path / "nodata",
        "--device",
        "cpu",
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("error: dataset cifar10:")
    assert "Traceback" not in res.stderr
    summary = read_json(tmp_path / "cell" / "summary.json")
    assert summary["status"] == "failed" and "data_batch_1" in summary["reason"]


@pytest.mark.slow
def test_synthetic_is_learnable(tmp_path):
    res = densenet(
        "train",
        "--out",
        tmp_path,
        "--model",
        "densenet-bc40-k12",
        "--dataset",
        "synthetic",
        "--n-train",
        "1000",
        "--n-test",
        "500",
        "--epochs",
        "2",
        # Epoch 1 at lr 0.1: under lua's schedule 2 epochs run at 0.01 and 0.001 only.
        "--lr-schedule",
        "chainer",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    summary = read_json(tmp_path / "summary.json")
    assert summary["status"] == "completed"
    assert summary["final_test_err"] < 20.0  # chance is 90%


@pytest.mark.slow
def test_smoke_on_real_cifar10_learns(tmp_path, cifar10_jpeg75):
    """The smoke protocol's schedule (3 epochs at lr 0.1, 0.01, 0.001; densenet-bc40-k12, CPU)
    learns real images on 1,000 / 500 of them: test error 70.0% on one core (2026-12-06; the
    full smoke protocol's 5,000 / 1,000 take 5x as long)."""
    res = densenet(
        "train",
        "--out",
        tmp_path,
        "--model",
        "densenet-bc40-k12",
        "--dataset",
        "cifar10",
        "--data-dir",
        cifar10_jpeg75,
        "--protocol",
        "smoke",
        "--n-train",
        "1000",
        "--n-test",
        "500",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 3
    losses = [float(r["train_loss"]) for r in rows]
    print("train loss per epoch", losses, "test err", [r["test_err"] for r in rows])
    assert losses[2] < losses[1] < losses[0]
    assert float(rows[-1]["test_err"]) < 80.0  # chance is 90%
    env = read_json(tmp_path / "env.json")
    assert env["dataset"]["identity"] == "cifar10-jpeg75"
    assert env["flags"]["applicability"]["cudnn"].startswith("not applicable")
    assert len(res.stdout.strip().splitlines()) == 3  # one progress line per epoch
    assert not os.path.exists(tmp_path / "checkpoint.pt")  # removed by default when done


@pytest.mark.slow
def test_kill9_in_epoch_2_resumes_identically(tmp_path):
    straight, resumed = kill9_in_epoch_2_then_resume(tmp_path)
    assert resumed == straight


@pytest.mark.slow
def test_chainer_kill9_in_epoch_2_resumes_identically(tmp_path):
    # 300 images in batches of 64: every epoch ends in a batch filled from the next permutation
    straight, resumed = kill9_in_epoch_2_then_resume(tmp_path, extra=("--recipe", "chainer"))
    assert resumed == straight
    assert len(straight) == 3


@pytest.mark.slow
def test_fast_path_equals_eager_on_cpu(tmp_path):
    """On the CPU `--fast on` cannot have the CUDA-graph step: it gets the eager step without
    the per-step loss.item() (steps.make_step), fed by the same feed.epoch_batches as --fast
    off (there is no other feeding path on either device). So the equal metrics are equal by
    construction: they show only that --fast on changes nothing else here (seed, data order,
    model, optimizer), not that the CUDA-graph step computes what eager does; that is checked
    with a stand-in capture in test_steps.py and measured on a GPU by scripts/gpu_bench.py
    (bench's fast_vs_eager). Beyond that it checks that the two runs took different steps
    and that --fast on records its fallback, its reason and the CUDA-only fields as absent."""
    for mode in ("off", "on"):
        res = densenet("train", "--out", tmp_path / mode, "--epochs", "2", "--fast", mode, *TINY)
        assert res.returncode == 0, res.stderr
    assert read_metrics(tmp_path / "on" / "metrics.csv") == read_metrics(
        tmp_path / "off" / "metrics.csv"
    )
    assert read_json(tmp_path / "off" / "summary.json")["step_mode"] == "eager"
    summary = read_json(tmp_path / "on" / "summary.json")
    assert summary["step_mode"] == "eager-nosync"
    assert summary["step_fallback"] == "CUDA graphs need a CUDA device"
    assert summary["host_syncs_per_epoch"] == [None, None]  # measured on CUDA only
    assert summary["weight_grad_stream"] is False  # the CUDA-graph step's only


@pytest.mark.slow
def test_divergence_is_a_status_not_a_traceback(tmp_path):
    res = densenet("train", "--out", tmp_path, "--epochs", "2", "--lr", "1e30", *TINY)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    summary = read_json(tmp_path / "summary.json")
    assert summary["status"] == "diverged" and "non-finite" in summary["reason"]
    assert summary["epochs_done"] == 1
