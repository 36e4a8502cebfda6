"""densenet/ on the oldest Python and torch it promises (3.8 and 1.8.1), in .venv-oldest.

scripts/oldest_torch.sh makes that environment; CI does and sets REQUIRE_OLDEST_TORCH=1, so a
missing one fails there instead of skipping. Each test below failed on torch 1.8.1 before the
fix it guards: reading TF32 flags crashed every run (torch 1.8's cuBLAS flags module asserts on
an unknown name), the memory-efficient mode crashed (its checkpoint has no use_reentrant and
raises ValueError for it), and the dense-layer gradcheck called the canary correct (torch 1.8's
gradcheck with raise_exception=False ignores its own Jacobian mismatch).

OLDEST_TORCH_PYTHON=/path/to/python runs the same checks on another interpreter and torch
(README.md lists the releases checked this way); only then are the 3.8 / 1.8 pins waived.
"""

import json
import os
import re
import subprocess

import pytest
from conftest import REPO, TINY_MODEL, densenet, read_json
from helpers.trainlib import TINY, TINY_BENCH, kill9_in_epoch_2_then_resume, read_metrics

from densenet.models import DenseLayer, build_model

PINNED = ("3.8.", "1.8.")  # scripts/oldest_torch.sh: Python 3.8, torch 1.8.1
OLDEST = os.environ.get("OLDEST_TORCH_PYTHON") or os.path.join(
    REPO, ".venv-oldest", "bin", "python"
)


@pytest.fixture(scope="module")
def oldest():
    if not os.path.exists(OLDEST):
        why = "no Python with the oldest torch at %s (make it: scripts/oldest_torch.sh)" % OLDEST
        if os.environ.get("REQUIRE_OLDEST_TORCH") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return OLDEST


def run_ok(*args, python):
    res = densenet(*args, python=python)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def versions(python):
    """(python "X.Y.", torch version) of an interpreter, asked directly."""
    code = "import sys, torch; print('%d.%d.' % sys.version_info[:2], torch.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def test_env_records_this_torch_and_its_tf32_flags(oldest):
    py, torch_version = versions(oldest)
    if "OLDEST_TORCH_PYTHON" not in os.environ:
        assert py == PINNED[0] and torch_version.startswith(PINNED[1]), (py, torch_version)
    env = json.loads(run_ok("env", python=oldest).stdout)
    assert env["environ"]["python"].startswith(py)
    assert env["environ"]["torch"] == torch_version
    flags = env["flags"]
    assert not [k for k, v in flags.items() if str(v).startswith("error")], flags
    if flags["fp32_precision_conv"] is None:  # before torch 2.9: the legacy allow_tf32 flags
        assert flags["fp32_precision_matmul"] is None
        assert isinstance(flags["tf32_matmul_legacy"], bool)
        assert isinstance(flags["tf32_cudnn_legacy"], bool)
    else:
        assert flags["fp32_precision_conv"] in ("ieee", "tf32", "none")


def test_models_table_equals_this_torchs(oldest):
    assert run_ok("models", python=oldest).stdout == run_ok("models", python=None).stdout


# `python -m densenet ARGS` that also counts the bottleneck recomputations (the calls with
# update_stats=False, which only a checkpoint's backward makes: densenet/models.py) and prints
# the count on stderr at exit. Run by the oldest interpreter: Python 3.8 syntax.
COUNT_RECOMPUTATIONS = """
import atexit, runpy, sys
import densenet.models as models
recomputed = [0]
bottleneck = models.DenseLayer.bottleneck
def counted(self, x, update_stats=True):
    recomputed[0] += not update_stats
    return bottleneck(self, x, update_stats)
models.DenseLayer.bottleneck = counted
atexit.register(lambda: sys.stderr.write("recomputed bottlenecks: %d\\n" % recomputed[0]))
sys.argv[0] = "densenet"
runpy.run_module("densenet", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_efficient_mode_with_dropout_equals_normal(oldest, tmp_path):
    # --augment off turns dropout on, so the checkpointed bottleneck must preserve RNG state.
    recomputed = {}
    for mode in ("off", "on"):
        args = ["--epochs", "2", "--augment", "off", "--efficient", mode] + TINY
        argv = [oldest, "-c", COUNT_RECOMPUTATIONS, "train", "--out", str(tmp_path / mode)]
        res = subprocess.run(argv + args, cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        assert read_json(tmp_path / mode / "summary.json")["status"] == "completed"
        [count] = re.findall(r"^recomputed bottlenecks: (\d+)$", res.stderr, re.M)
        recomputed[mode] = int(count)
    # The equality below holds trivially if --efficient on does not checkpoint: the "on" run
    # must have recomputed every bottleneck of the model (3 in TINY_MODEL) in every step.
    layers = sum(isinstance(m, DenseLayer) for m in build_model(TINY_MODEL).modules())
    assert layers == 3
    assert recomputed["off"] == 0 and recomputed["on"] > 0, recomputed
    assert recomputed["on"] % layers == 0, recomputed
    assert read_metrics(tmp_path / "on" / "metrics.csv") == read_metrics(
        tmp_path / "off" / "metrics.csv"
    )


@pytest.mark.slow
def test_adam_deterministic_run_records_its_flags(oldest, tmp_path):
    args = ("--epochs", "1", "--optimizer", "adam", "--deterministic", "on", "--tf32", "on")
    run_ok("train", "--out", tmp_path, *args, *TINY, python=oldest)
    assert read_json(tmp_path / "summary.json")["status"] == "completed"
    flags = read_json(tmp_path / "env.json")["flags"]
    assert flags["deterministic_algorithms"] is True and flags["cudnn_deterministic"] is True
    assert flags["tf32_effective"] is True
    assert flags.get("tf32_matmul_legacy", True) and flags["fp32_precision_conv"] != "ieee"


@pytest.mark.slow
def test_kill9_in_epoch_2_resumes_identically(oldest, tmp_path):
    straight, resumed = kill9_in_epoch_2_then_resume(tmp_path, python=oldest)
    assert resumed == straight


@pytest.mark.parametrize("canary,verdict", [("none", "pass"), ("noncontig-grad", "fail")])
def test_gradient_stage_catches_the_canary(oldest, tmp_path, canary, verdict):
    run_ok(
        "gradcheck",
        "--out",
        tmp_path,
        "--model",
        "densenet-bc40-k12",
        "--device",
        "cpu",
        "--canary",
        canary,
        "--batch-size",
        "4",
        python=oldest,
    )
    result = read_json(tmp_path / "gradcheck.json")
    assert result["verdict"] == verdict, result["max_rel_err"]
    cases = result["gradcheck"]["cases"]
    assert result["gradcheck"]["all_as_expected"], cases
    assert result["gradcheck"]["canary_detected"]
    assert result["determinism"]["bitwise_equal"] is True


def test_bench_measures_both_sides_and_the_runners_agree(oldest, tmp_path):
    out = tmp_path / "bench.json"
    run_ok("bench", "--out", out, *TINY_BENCH, python=oldest)
    bench = read_json(out)
    assert bench["step_ms"]["eager"] > 0 and bench["step_ms"]["fast"] > 0
    assert bench["data_img_s"]["ours"] > 0
    assert bench["environ"]["torch"] == versions(oldest)[1]
    agreement = bench["steps"]["agreement"]  # efficient = reentrant checkpoint on torch < 1.11
    for name in ("fast_vs_eager", "efficient_vs_fast"):
        assert agreement[name]["bitwise_equal"], agreement[name]
