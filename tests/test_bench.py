"""`densenet bench` on CPU: both sides of every ratio measured in one run (finite, positive),
the data pipeline comparison really ran both sides, a missing torchvision is recorded with its
reason; the cost probe feeds workflow/scripts/predict_cost.py, one prediction per cell."""

import json
import math
import os
import signal
import sys

import pytest
import torch
from conftest import REPO, TINY_MODEL, bottleneck_runs, densenet, start_densenet
from helpers.trainlib import TINY_BENCH

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))
import predict_cost  # noqa: E402

TINY = TINY_BENCH[: TINY_BENCH.index("--steps")]  # the probe sets its own steps


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    res = densenet("bench", "--out", out, *TINY_BENCH)
    assert res.returncode == 0, res.stderr
    with open(out) as f:
        return json.load(f), res.stdout


@pytest.mark.slow
def test_bench_json_holds_both_sides_of_each_ratio(bench):
    res, stdout = bench
    for pair in (
        res["step_ms"],
        res["data_img_s"],
        res["efficient"]["step_ms"],
        res["efficient"]["peak_mem_mb"],
    ):
        assert len(pair) == 2 and all(positive(v) for v in pair.values()), pair
    assert positive(res["peak_mem_mb"])
    assert res["environ"]["torch"] == torch.__version__ and res["config"]["device"] == "cpu"
    assert res["steps"]["modes"]["fast"]["mode"] == "eager-nosync"
    assert res["steps"]["step_stats"]["eager"]["n"] == 2  # 2 rounds x 1 step
    # No second stream on the CPU: no serial runner, and the section says why.
    assert res["overlap"] == {"reason": "no CUDA-graph step here"}
    assert "fast-serial" not in res["steps"]["step_ms"]
    assert res["steps"]["modes"]["fast"]["weight_grad_stream"] is False
    # The fast step with the training loop's feeding (feed.py) in front of it, against the
    # step alone: the same batches, so the same weights after the same steps.
    feed = res["feed"]
    assert feed["agreement"]["bitwise_equal"] and feed["agreement"]["steps"] == [3, 3], feed
    assert feed["images"] == 256 and all(positive(v) for v in feed["step_ms"].values()), feed
    assert feed["step_ms"]["prepared"] == res["step_ms"]["fast"]
    assert feed["step_ms"]["fed"] == res["steps"]["step_ms"]["fast-fed"]
    assert res["steps"]["modes"]["fast-fed"]["mode"] == "eager-nosync"
    assert "step: fed / prepared batches" in stdout


@pytest.mark.slow
def test_bench_fast_and_efficient_compute_what_eager_computes(bench):
    # Equal also when efficient mode does not checkpoint: the next test shows that it does.
    agreement = bench[0]["steps"]["agreement"]
    for name in ("fast_vs_eager", "efficient_vs_fast"):
        assert agreement[name]["bitwise_equal"], agreement[name]
        assert agreement[name]["steps"] == [3, 3]


def test_the_benchs_efficient_runner_checkpoints_and_its_fast_runner_does_not():
    # efficient_vs_fast (above) is bitwise equal just as well between two normal models, and
    # the CPU's peak memory is too coarse to tell them apart at batch 4: the bench's own runners,
    # built from its RUNNERS table, must differ in the one way the comparison is about, the
    # recomputation of every bottleneck in backward.
    from densenet.bench.runners import RUNNERS, Runner
    from densenet.cli import build_parser

    # --out is required by the parser; nothing here writes it.
    args = build_parser().parse_args(["bench", "--out", "unused.json", *TINY_BENCH])
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    runs = {}
    for name, fast, efficient, compiled in RUNNERS:
        if name in ("fast", "efficient"):
            cpu, log = torch.device("cpu"), lambda *a: None
            runner = Runner(name, args.model, fast, efficient, cpu, args, log, compiled=compiled)
            with bottleneck_runs(runner.model) as runs[name]:
                runner([batch])
    # TINY_BENCH's densenet-bc10-k12: 3 dense layers, one per block.
    assert len(runs["fast"]) == 3 and set(runs["fast"].values()) == {1}, runs["fast"]
    assert runs["efficient"] == dict.fromkeys(runs["fast"], 2), runs["efficient"]


@pytest.mark.slow
def test_bench_data_comparison_ran_both_sides(bench):
    res, stdout = bench
    data = res["data"]
    assert data["images"] == 256 and data["batch_size"] == 4
    for side in ("ours", "torchvision"):
        rounds = data[side]["rounds_img_s"]
        assert len(rounds) == 2 and all(positive(v) for v in rounds), (side, rounds)
    assert data["torchvision"]["reason"] is None
    assert data["torchvision"]["num_workers"] == len(os.sched_getaffinity(0))
    assert "data: ours / torchvision" in stdout


@pytest.mark.slow
def test_a_stopped_bench_keeps_what_it_finished_apart_from_the_result(tmp_path):
    # A time limit stops a bench with SIGTERM (scripts/gpu_bench.py): the step timing it
    # finished must survive, marked partial, and bench.json must not appear half-made.
    out = tmp_path / "bench.json"
    args = TINY_BENCH[: TINY_BENCH.index("--data-images")]
    # A data comparison long enough (minutes at batch 4) that the signal lands inside it.
    proc = start_densenet("bench", "--out", out, *args, "--data-images", "20000")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("bench: step timing done"):
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    log = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, log
    assert "bench: stopped by SIGTERM" in log, log
    assert sorted(os.listdir(tmp_path)) == ["bench.partial.json"]  # no result, no temp file
    part = json.loads((tmp_path / "bench.partial.json").read_text())
    assert part["partial"]["stopped_by"] == "SIGTERM"
    assert part["partial"]["finished"] == ["environ", "feed", "flags", "overlap", "steps"]
    assert all(positive(part["steps"]["step_ms"][k]) for k in ("eager", "fast", "efficient"))
    assert part["steps"]["agreement"]["fast_vs_eager"]["bitwise_equal"]
    assert part["runners_built"]["setup_s"].keys() == part["steps"]["step_ms"].keys()
    assert part["config"]["data_images"] == 20000 and "data" not in part

    # A run that finishes writes the result and clears the stopped run's leftovers.
    res = densenet("bench", "--out", tmp_path, *TINY_BENCH)  # --out DIR: DIR/bench.json
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path)) == ["bench.json"]


def test_missing_torchvision_is_recorded_not_invented(monkeypatch):
    from densenet.bench.data_pipeline import bench_data
    from densenet.data import make_synthetic

    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    ds = make_synthetic(64, 10)
    out = bench_data(ds.x_train, ds.y_train, ds.mean, ds.std, torch.device("cpu"), 16, 1)
    assert out["torchvision"]["img_s"] is None and out["torchvision"]["rounds_img_s"] == []
    assert "torchvision is not importable" in out["torchvision"]["reason"]
    assert positive(out["ours"]["img_s"])


def manifest(cells):
    keys = (
        "model",
        "dataset",
        "augment",
        "optimizer",
        "torch",
        "cudnn",
        "tf32",
        "deterministic",
        "canary",
        "seed",
        "protocol",
        "device",
    )
    out = []
    for i, (model, env, extra) in enumerate(cells):
        params = dict(
            zip(
                keys,
                (
                    model,
                    "cifar10",
                    "on",
                    "sgd",
                    "local",
                    "on",
                    "off",
                    "off",
                    "none",
                    0,
                    "smoke",
                    "auto",
                ),
            )
        )
        params.update(extra)
        out.append({"id": "c%d" % i, "params": params, "env": env})
    return {"study": "t", "config": {"train": {"epochs": 2, "n_train": None}}, "cells": out}


@pytest.mark.slow
def test_probe_feeds_one_prediction_per_cell(tmp_path):
    res = densenet(
        "bench",
        "--probe",
        "--out",
        tmp_path,
        "--steps",
        "1",
        "--warmup",
        "1",
        "--env-id",
        "e1",
        "--eval-batch-size",
        "8",
        *TINY,
    )
    assert res.returncode == 0, res.stderr
    probe_path = tmp_path / "probe.json"  # --out DIR, as the workflow's runner passes it
    man = manifest(
        [
            (TINY_MODEL, "e1", {}),
            (TINY_MODEL, "e2", {"n_train": 40}),
            ("densenet-bc100-k12", "e1", {}),
        ]
    )
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    out = tmp_path / "predicted_cost.json"
    assert (
        predict_cost.main(
            ["--manifest", str(tmp_path / "manifest.json"), "--out", str(out), str(probe_path)]
        )
        == 0
    )
    pred = json.loads(out.read_text())
    assert sorted(pred) == ["c0", "c1", "c2"]
    assert positive(pred["c0"]["predicted_s"]) and positive(pred["c1"]["predicted_s"])
    assert pred["c0"]["match"] == 0 and pred["c1"]["match"] == 1
    assert pred["c2"]["predicted_s"] is None and "densenet-bc100-k12" in pred["c2"]["basis"]
    # c1 by hand: 2 epochs (study override) of 40 images (cell), so one step of batch 64 (the
    # probe's batch-4 step scaled), and smoke's 1000 test images.
    probe = json.loads(probe_path.read_text())
    m = probe["models"][TINY_MODEL]
    epoch_ms = (
        1 * m["step_ms"]["sgd"] * 64 / 4
        + 40 * probe["augment_ms_per_img"]
        + 1000 * m["eval_ms_per_img"]
        + m["checkpoint_ms"]
    )
    assert pred["c1"]["predicted_s"] == pytest.approx(2 * epoch_ms / 1000.0)
    # Memory: the process's peak, beyond the interpreter and torch (hundreds of MB) and below
    # what a few batch-4 steps of this small model could take. The cells train on CIFAR-10,
    # loaded whole: more images than the probe's synthetic ones, which the prediction adds.
    assert probe["peak_host_method"].startswith("VmHWM")
    assert 100 < m["peak_host_mb"] < 4000 and m["peak_gpu_mb"] is None
    assert probe["host_data_images"] >= 64  # 4 x batch 4, at least
    per_img = probe["host_data_mb"] / probe["host_data_images"]
    assert per_img == pytest.approx((3 * 32 * 32 + 8) / 2.0**20)
    images = 50000 + 10000
    assert pred["c0"]["predicted_mem_mb"] == pytest.approx(
        m["peak_host_mb"] + max(0, images * per_img - probe["host_data_mb"])
    )
    assert pred["c2"]["predicted_mem_mb"] is None


def fake_probe(env, step_ms, batch=64, peak_host_mb=None):
    probe = {
        "kind": "cost-probe",
        "env": dict(env, torch="x"),
        "batch_size": batch,
        "augment_ms_per_img": 0.0,
        "protocols": {"paper": {"epochs": 300, "n_train": None, "n_test": None, "batch_size": 64}},
        "dataset_sizes": {
            "cifar10": {"train": 50000, "test": 10000},
            "synthetic": {"train": 10000, "test": 2000},
        },
        "models": {
            "m": {
                "step_ms": {"sgd": step_ms},
                "step_mode": {"sgd": "cuda-graph"},
                "eval_ms_per_img": 0.0,
                "checkpoint_ms": 0.0,
            }
        },
    }
    if peak_host_mb is not None:  # a probe that measured memory
        probe["models"]["m"].update(peak_host_mb=peak_host_mb, peak_gpu_mb=300.0)
        probe.update(host_data_mb=20.0, host_data_images=4000)
    return probe


def test_predicted_memory_is_the_probes_peak_plus_the_cells_larger_data_set(tmp_path):
    cpu = {"device": "cpu", "cudnn": "on", "tf32": "off", "deterministic": "off", "canary": "none"}
    params = dict(cpu, model="m", dataset="cifar10", protocol="paper", optimizer="sgd")
    man = {"cells": [{"id": "c", "env": "e", "params": params}]}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    (tmp_path / "probe.json").write_text(json.dumps(fake_probe(cpu, 5.0, peak_host_mb=900.0)))
    out = tmp_path / "predicted_cost.json"
    argv = ["--manifest", str(tmp_path / "manifest.json"), "--out", str(out)]
    assert predict_cost.main(argv + [str(tmp_path / "probe.json")]) == 0
    # CIFAR-10 is loaded whole: 60,000 images at the probe's 20 MB / 4,000 images, of which
    # the probe held 20 MB already.
    assert json.loads(out.read_text())["c"]["predicted_mem_mb"] == pytest.approx(1180.0)
    # A synthetic cell smaller than the probe's set: the probe's peak as it is.
    small = dict(params, dataset="synthetic")
    got = predict_cost.predict(
        {
            "config": {"train": {"n_train": 1000, "n_test": 500}},
            "cells": [dict(man["cells"][0], params=small)],
        },
        [fake_probe(cpu, 5.0, peak_host_mb=900.0)],
    )
    assert got["c"]["predicted_mem_mb"] == pytest.approx(900.0)
    # A synthetic cell of 10,000 + 2,000 images: 60 MB, 40 more than the probe held.
    got = predict_cost.predict(
        {"cells": [dict(man["cells"][0], params=small)]},
        [fake_probe(cpu, 5.0, peak_host_mb=900.0)],
    )
    assert got["c"]["predicted_mem_mb"] == pytest.approx(940.0)
    # A probe without memory figures predicts none (SLURM then asks for the device's default).
    got = predict_cost.predict(man, [fake_probe(cpu, 5.0)])["c"]
    assert got["predicted_mem_mb"] is None and got["predicted_s"] is not None


def test_prediction_prefers_the_cells_own_environment():
    gpu = {"device": "cuda", "cudnn": "on", "tf32": "off", "deterministic": "off", "canary": "none"}
    probes = [
        fake_probe(dict(gpu, env_id="other"), 30.0),
        fake_probe(dict(gpu, cudnn="off", env_id="mine"), 400.0),
        fake_probe(dict(gpu, device="cpu", env_id=None), 9000.0),
    ]
    cell = {
        "id": "c",
        "env": "mine",
        "params": {
            "model": "m",
            "dataset": "cifar10",
            "protocol": "paper",
            "optimizer": "sgd",
            "device": "cuda",
            "cudnn": "off",
            "tf32": "off",
            "deterministic": "off",
            "canary": "none",
        },
    }
    got = predict_cost.predict({"cells": [cell]}, probes)["c"]
    assert got["match"] == 0 and "mine" in got["basis"]
    assert got["predicted_s"] == pytest.approx(300 * 782 * 400.0 / 1000.0)  # ceil(50000/64)
    cell["env"] = "unprobed"
    got = predict_cost.predict({"cells": [cell]}, probes)["c"]
    assert got["match"] == 1 and got["predicted_s"] == pytest.approx(300 * 782 * 400.0 / 1000)


def test_probe_args_cover_the_models_and_optimizers_of_the_environment():
    man = manifest(
        [
            ("densenet-bc100-k12", "e1", {}),
            ("densenet-bc40-k12", "e1", {"optimizer": "adam"}),
            ("vgg16-bn", "e2", {}),
        ]
    )
    env = {"cudnn": "off", "tf32": "on", "device": "cuda", "canary": "none", "torch": "2.3"}
    args = predict_cost.probe_args(man["cells"], "e1", env)
    assert args[:4] == [
        "--models",
        "densenet-bc100-k12,densenet-bc40-k12",
        "--optimizers",
        "adam,sgd",
    ]
    assert args[4:] == [
        "--cudnn",
        "off",
        "--tf32",
        "on",
        "--device",
        "cuda",
        "--canary",
        "none",
        "--env-id",
        "e1",
    ]


def test_the_feed_section_says_why_it_was_not_measured():
    from argparse import Namespace

    from densenet.bench.benchmark import feed_section

    steps = {"step_ms": {"eager": 2.0, "fast": 1.0}}  # no fast-fed runner was built
    assert feed_section(Namespace(feed="off"), steps, 0) == {"reason": "--feed off"}
    assert feed_section(Namespace(feed="on"), steps, 0) == {
        "reason": "--data-images < --batch-size"
    }
