"""Gradient stage: the clean model passes against float64, the canary is caught, the float64
dense-layer gradcheck fails exactly where the 2017 bug bites, determinism is measured.

The two end-to-end runs go through the CLI in subprocesses (numerics.configure changes global
torch state) at batch 4 and 2 determinism steps, to stay within seconds on a small CPU.
"""

import json
import math
import os

import pytest
import torch
import torch.nn as nn

from densenet.gradcheck.determinism import check_determinism
from densenet.gradcheck.stage import FP32_MAX, TF32_ABSURD, canary_record, decide
from densenet.gradcheck.whole_model import Probe

SMALL = ["--batch-size", "4", "--steps", "2", "--seed", "0", "--deterministic", "on"]


def run_stage(run_densenet, out, *extra):
    res = run_densenet("gradcheck", "--out", out, "--device", "cpu", *(SMALL + list(extra)))
    assert res.returncode == 0, res.stdout + res.stderr
    with open(os.path.join(str(out), "gradcheck.json")) as f:
        return json.load(f), res


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    from conftest import densenet

    return run_stage(densenet, tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    from conftest import densenet

    return run_stage(densenet, tmp_path_factory.mktemp("canary"), "--canary", "noncontig-grad")


def all_errs(result):
    return [
        e for layer in result["layers"] for e in (layer["rel_err_weight"], layer["rel_err_input"])
    ]


def test_clean_model_passes_against_float64(clean):
    result, res = clean
    print("clean max rel err %.3g, median %.3g" % (result["max_rel_err"], result["median_rel_err"]))
    assert result["verdict"] == "pass", result["reasons"]
    assert result["max_rel_err"] <= FP32_MAX
    errs = all_errs(result)
    assert len(result["layers"]) == 40  # densenet-bc40-k12: 39 convolutions and the classifier
    assert all(0.0 < e <= FP32_MAX for e in errs)  # > 0: float32 really differs from float64
    assert max(errs) == result["max_rel_err"]
    assert "max rel err" in res.stdout and res.stdout.strip().endswith("pass")


def test_canary_fails_by_orders_of_magnitude(clean, canary):
    c, k = clean[0], canary[0]
    print(
        "canary max rel err %.3g, median %.3g (clean %.3g, %.3g)"
        % (k["max_rel_err"], k["median_rel_err"], c["max_rel_err"], c["median_rel_err"])
    )
    assert k["verdict"] == "fail"
    assert k["max_rel_err"] >= 100 * c["max_rel_err"]
    assert k["median_rel_err"] >= 100 * c["median_rel_err"]
    assert canary[1].stdout.strip().endswith("fail")
    # Same weights and batch: the forward passes agree, only the backward is wrong.
    assert k["forward"]["loss"] == c["forward"]["loss"]


def test_canary_receives_noncontiguous_grad_outputs(canary):
    result = canary[0]
    assert result["canary"] == {"configured": True, "exercised": True, "note": None}
    noncontig = [x["name"] for x in result["layers"] if x["grad_output_contiguous"] is False]
    # Every dense layer's 3x3 conv feeds torch.cat, whose backward hands it a channel slice.
    assert noncontig == ["features.%d.conv2" % i for i in range(20) if i not in (6, 13)]
    assert result["grad_layout"] == {"conv_grad_outputs": 39, "non_contiguous": 18}


def case(result, conv, layout):
    (found,) = [
        c for c in result["gradcheck"]["cases"] if c["conv"] == conv and c["layout"] == layout
    ]
    return found


def test_float64_gradcheck_fails_only_where_the_bug_bites(clean):
    gc = clean[0]["gradcheck"]
    assert gc["dtype"] == "float64" and len(gc["cases"]) == 6
    assert all(c["cudnn"] == "not applicable on cpu" for c in gc["cases"])
    for layout in ("contiguous", "channel-slice", "cat"):
        assert case(clean[0], "clean", layout)["passed"], layout
    assert case(clean[0], "canary", "contiguous")["passed"]
    sliced = case(clean[0], "canary", "channel-slice")
    assert sliced["grad_output_contiguous"] is False and not sliced["passed"]
    assert sliced["max_abs_err"] > 1e3 * case(clean[0], "clean", "channel-slice")["max_abs_err"]
    natural = case(clean[0], "canary", "cat")
    assert natural["grad_output_contiguous"] is False and not natural["passed"]
    assert gc["all_as_expected"] and gc["canary_detected"] and gc["configured_passed"]


def test_canary_environment_fails_its_own_gradcheck_cases(canary):
    gc = canary[0]["gradcheck"]
    configured = [c for c in gc["cases"] if c["configured"]]
    assert {c["conv"] for c in configured} == {"canary"}
    assert not gc["configured_passed"]


def test_determinism_equal_with_deterministic_on(clean):
    det = clean[0]["determinism"]
    assert det["deterministic"] == "on" and det["steps"] == 2
    assert det["bitwise_equal"] is True and det["max_abs_diff"] == 0.0
    assert det["losses"][0] == det["losses"][1] and len(det["losses"][0]) == 2


def test_gradcheck_json_schema(clean):
    result = clean[0]
    for key in (
        "verdict",
        "max_rel_err",
        "layers",
        "gradcheck",
        "determinism",
        "config",
        "environ",
        "flags",
        "reasons",
        "precision",
        "thresholds",
    ):
        assert key in result, key
    assert set(result["layers"][0]) == {
        "name",
        "kind",
        "rel_err_weight",
        "rel_err_input",
        "grad_output_contiguous",
    }
    assert result["config"]["model"] == "densenet-bc40-k12"
    assert result["flags"]["applicability"]["cudnn"] == "not applicable on cpu"
    assert result["environ"]["torch"] == torch.__version__


def test_no_cuda_is_skipped_not_failed(run_densenet, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = run_densenet("gradcheck", "--out", tmp_path, "--device", "cuda")
    assert res.returncode == 4, res.stderr
    with open(os.path.join(str(tmp_path), "gradcheck.json")) as f:
        assert json.load(f)["verdict"] == "skipped"


@pytest.mark.parametrize(
    "max_rel, nonfinite, tf32, layer_ok, expected",
    [
        (1e-6, [], False, True, "pass"),
        (2e-4, [], False, True, "fail"),
        (1e-6, [], True, True, "pass"),
        (0.1, [], True, True, "reduced-precision"),
        (0.6, [], True, True, "fail"),
        (None, ["fc"], True, True, "fail"),
        (1e-6, [], False, False, "fail"),
    ],
)
def test_verdict_thresholds(max_rel, nonfinite, tf32, layer_ok, expected):
    assert TF32_ABSURD == 0.5
    assert decide(max_rel, nonfinite, tf32, layer_ok)[0] == expected


def test_canary_that_cannot_bite_says_so():
    rec = canary_record({"canary": "noncontig-grad"}, {"conv_grad_outputs": 3, "non_contiguous": 0})
    assert rec["exercised"] is False and "cannot bite" in rec["note"]
    assert canary_record({"canary": "none"}, {"non_contiguous": 0})["note"] is None


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(2, 3, 1, bias=False)
        self.norm = nn.BatchNorm2d(3)
        self.conv1 = nn.Conv2d(3, 2, 1, bias=False)

    def forward(self, x):
        return self.conv1(torch.relu(self.norm(self.conv0(x))))


def test_reference_follows_the_imposed_relu_signs():
    torch.manual_seed(0)
    model = Tiny().double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    rec = Probe(model)
    model(x)
    rec.remove()
    signs = rec.signs["norm"].clone()
    idx = tuple(int(i) for i in torch.nonzero(signs)[0])
    signs[idx] = False  # pretend the device saw this pre-activation below zero
    probe = Probe(model, impose={"norm": signs})
    model(x).sum().backward()
    probe.remove()
    assert probe.moved == 1
    got = model.conv0.weight.grad.clone()
    # Expected: the same network with that one ReLU closed (its value shifted by <= itself).
    model.zero_grad()
    mask = signs.double()
    model.conv1(model.norm(model.conv0(x)) * mask).sum().backward()
    assert torch.allclose(got, model.conv0.weight.grad, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(got, torch.zeros_like(got))


def test_determinism_check_reports_a_difference():
    calls = []

    def build():
        calls.append(1)
        torch.manual_seed(0)
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 10),
        )
        if len(calls) == 2:  # the second run starts from a slightly different weight
            with torch.no_grad():
                m[0].weight[0, 0, 0, 0] += 1e-3
        return m

    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    det = check_determinism(build, x, y, steps=2)
    assert det["bitwise_equal"] is False and det["max_abs_diff"] > 0
    assert math.isfinite(det["max_abs_diff"])
    assert "0.weight" in det["unequal_tensors"]
