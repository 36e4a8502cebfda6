"""`--compile on` (densenet/compiled.py) and the convolution-kernel census (densenet/kernels.py)
on the CPU: the compiled step keeps float32 accuracy against float64 and trains as eager does
to float32 noise; the bench measures both sides; a torch that cannot compile skips the cell
with its reason; older checkpoints still resume; the census records the convolution ops and
leaves the training state alone.

The compiling tests use the tests' model (densenet-bc10-k12): with a cold inductor cache, on
one core each, the bench test took 53 s and the training test 40 s (2026-12-06; with
DenseNet-BC-40 140 s and 100 s). torch's on-disk cache then serves the same graphs in seconds
(the GPU scripts' dry run compiles the same ones), but they stay slow tests."""

import argparse
import json
import math

import pytest
import torch
from conftest import densenet, tiny_cell
from helpers.trainlib import TINY_BENCH, read_metrics

from densenet import celldir, compiled, kernels, outcome, train
from densenet.gradcheck.batch import make_batch
from densenet.models import build_model

# Compiled float64 against eager float64: reordered sums only (~1e-15); a wrong kernel, >= 1e-3.
FP64_SAME = 1e-10
# float32 against float64 above a ReLU kink that flipped (compiled.py): ~1e-3.
KINK = 1e-2
TRAIN = ["--epochs", "2", "--batch-size", "16"] + tiny_cell(40, 16)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_support_names_what_is_missing(monkeypatch):
    cpu = torch.device("cpu")
    assert compiled.support(cpu) is None  # g++ is on this machine and in CI
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert "needs a C++ compiler" in compiled.support(cpu)
    monkeypatch.delattr(torch, "compile")
    assert compiled.support(cpu) == "torch %s has no torch.compile (added in 2.0)" % (
        torch.__version__
    )


@pytest.mark.slow
def test_bench_compile_measures_both_sides_and_keeps_float32_accuracy(tmp_path):
    out = tmp_path / "bench.json"
    res = densenet("bench", "--out", out, "--compile", "on", "--profile", "off", *TINY_BENCH)
    assert res.returncode == 0, res.stderr[-3000:]
    c = read_json(out)["compile"]
    assert all(math.isfinite(v) and v > 0 for v in c["step_ms"].values()), c["step_ms"]
    assert set(c["step_ms"]) == {"fast", "compiled"} and c["setup_s"] > 0
    assert c["agreement"]["steps"] == [3, 3]
    g = c["grad_precision"]
    assert g["eager_vs_fp64"]["layers"] == 10  # densenet-bc10-k12: 9 convs and the classifier
    # The same function and gradient: in float64 only the summation order differs.
    assert g["compiled_fp64_vs_eager_fp64"]["max"] < FP64_SAME, g["compiled_fp64_vs_eager_fp64"]
    # float32: ~1e-6 per layer, up to ~1e-3 above a ReLU kink (compiled.py); a wrong kernel O(1).
    for key in ("eager_vs_fp64", "compiled_vs_fp64", "compiled_vs_eager"):
        assert g[key]["median"] < KINK, (key, g[key])
    loss = g["loss"]
    assert abs(loss["compiled_fp32"] - loss["eager_fp64"]) < 1e-5 * abs(loss["eager_fp64"])
    assert "step: fast / compiled" in res.stdout


@pytest.mark.slow
def test_train_compile_on_follows_eager_to_float32_noise(tmp_path):
    for mode in ("off", "on"):
        res = densenet("train", "--out", tmp_path / mode, "--compile", mode, *TRAIN)
        assert res.returncode == 0, res.stderr[-3000:]
    eager = read_metrics(tmp_path / "off" / "metrics.csv")
    comp = read_metrics(tmp_path / "on" / "metrics.csv")
    assert len(comp) == 2
    for a, b in zip(eager, comp):
        # Two epochs of 3 steps (the last one partial: a second compile) at lr 0.1.
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-2, (a, b)
    assert comp != eager  # reordered reductions: close, not bitwise (else nothing compiled)
    summary = read_json(tmp_path / "on" / "summary.json")
    assert summary["config"]["compile"] == "on" and summary["status"] == "completed"
    names = [k["name"] for k in summary["conv_kernels"]["kernels"]]
    assert any("conv" in n for n in names), names
    # A cell trained without --compile is another computation: its checkpoint does not resume.
    res = densenet(
        "train", "--out", tmp_path / "kept", "--keep-checkpoint", "on", "--compile", "off", *TRAIN
    )
    assert res.returncode == 0, res.stderr
    res = densenet("train", "--out", tmp_path / "kept", "--compile", "on", *TRAIN)
    assert res.returncode != 0 and "compile: 'off' vs 'on'" in res.stderr, res.stderr[-2000:]


def test_a_torch_that_cannot_compile_skips_the_cell_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled, "support", lambda device: "no compiler here")
    cfg = dict(
        out=str(tmp_path),
        device="cpu",
        compile="on",
        cudnn="on",
        tf32="off",
        deterministic="off",
        seed=0,
    )
    assert train.run(cfg) == outcome.EXIT_SKIPPED
    summary = read_json(tmp_path / "summary.json")
    assert summary["status"] == "skipped"
    assert summary["reason"] == "--compile on: no compiler here"


def test_checkpoints_from_before_compile_existed_still_resume():
    cfg = {"model": "densenet-bc40-k12", "out": "x", "compile": "off"}
    assert celldir.resume_key(cfg) == {"model": "densenet-bc40-k12"}  # as written before
    assert celldir.resume_key(dict(cfg, compile="on"))["compile"] == "on"


def test_kernel_census_lists_the_convolutions_and_leaves_training_alone():
    torch.manual_seed(0)
    model = build_model("densenet-bc40-k12", dropout=0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = make_batch(4, torch.device("cpu"))
    rng = torch.random.get_rng_state()
    rec = kernels.conv_kernels(model, x, y, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), rng)  # dropout drew from a restored stream
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN buffers included
    assert all(p.grad is None for p in model.parameters())
    by_name = {r["name"]: r for r in rec["kernels"]}
    # One forward convolution per conv layer of DenseNet-BC-40: oneDNN's, or with one thread
    # (each xdist worker has one core) ATen's own for the 1x1 ones (thnn_conv2d, which calls
    # _slow_conv2d_forward), whose backward is _slow_conv2d_backward.
    forward = ("aten::mkldnn_convolution", "aten::thnn_conv2d")
    assert sum(by_name[n]["count"] for n in forward if n in by_name) == 39, sorted(by_name)
    assert "aten::mkldnn_convolution" in by_name and "aten::convolution_backward" in by_name
    assert set(by_name) <= set(forward) | {
        "aten::convolution_backward",
        "aten::_slow_conv2d_forward",
        "aten::_slow_conv2d_backward",
    }, sorted(by_name)
    assert "batch 4" in rec["what"]
    assert all(r["self_ms"] > 0 for r in rec["kernels"])


# Kernel names as an H200 profile names them (torch 2.11, cuDNN 9.19), shortened.
H200_KERNELS = {
    "void wgrad_alg0_engine<float, 128, 5, 5, 3, 3, 3, false, 512>(int, int)": True,
    "sm80_xmma_dgrad_implicit_gemm_f32f32_f32f32_f32_nchwkcrs_nchw_tilesize32x32x8": True,
    "void fft2d_r2c_16x16<float>(float2*, float const*, int)": True,
    "void cutlass::Kernel2<cutlass_80_simt_sgemm_64x64_8x5_nn_align1>(cutlass_80_simt)": True,
    "triton_tem_fused_convolution_0": True,
    "triton_poi_fused_convolution_backward_native_batch_norm_backward_threshold_backw": False,
    "triton_red_fused_convolution_backward_native_batch_norm_backward_threshold_backw": False,
    "void cudnn::bn_bw_1C11_kernel_new<float, float, float2, 128, true, 1>(float)": False,
    "aten::cudnn_convolution": False,
    "triton_poi_fused__native_batch_norm_legit_functional_relu_5": False,
}


def test_the_census_keeps_convolution_kernels_and_drops_fused_elementwise_ones():
    cuda = torch.device("cuda")
    got = {name: kernels.is_conv_kernel(name, cuda) for name in H200_KERNELS}
    assert got == H200_KERNELS
    cpu = torch.device("cpu")
    assert kernels.is_conv_kernel("aten::mkldnn_convolution", cpu)
    assert kernels.is_conv_kernel("aten::convolution_backward", cpu)
    for name in (  # rows of a CPU cell's profile (the canary's included) that compute nothing
        "aten::convolution",
        "autograd::engine::evaluate_function: ConvolutionBackward0",
        "ConvolutionBackward0",
        "_BuggyConvBackwardBackward",
    ):
        assert not kernels.is_conv_kernel(name, cpu), name


def test_precision_off_leaves_out_the_float64_check_and_says_so(monkeypatch):
    # gpu_bench.py's compile_tf32 stage: float64 never uses TF32, so the compile stage's check
    # covers it, and the two extra compiles would cost minutes of GPU time.
    from densenet.bench import benchmark as bench

    def no_check(*args):
        raise AssertionError("grad_precision ran under --precision off")

    monkeypatch.setattr(bench, "grad_precision", no_check)
    args = argparse.Namespace(precision="off", batch_size=4, seed=0, model="densenet-bc40-k12")
    steps = {
        "step_ms": {"fast": 2.0, "compiled": 1.0},
        "setup_s": {"compiled": 3.0},
        "memory_mb": {"compiled": 5.0},
        "modes": {"compiled": {"mode": "eager-nosync"}},
        "agreement": {"compiled_vs_eager": {"steps": [3, 3], "max_abs_state_diff": 0.0}},
    }
    c = bench.bench_compile(args, torch.device("cpu"), steps)
    assert c["grad_precision"] == {"reason": "--precision off"}
    assert c["precision_summary"] == "gradients against float64: not checked (--precision off)"
    assert c["step_ms"] == {"fast": 2.0, "compiled": 1.0}
