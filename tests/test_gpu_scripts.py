"""The one-call GPU scripts, run on the CPU in their dry modes, so that they do not rot between
the rare sessions lent a GPU (a broken script would cost the whole lease): scripts/gpu_bench.py
with GPU_BENCH_DRY=1 and scripts/gpu_check.sh with DEVICE=cpu."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def run_script(argv, env):
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_gpu_bench_dry_run_completes_every_step(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, GPU_BENCH_DRY="1", OUT=str(out), GPU_BENCH_WORK=str(work))
    # A bundle that is not there: the CIFAR-10 build fails and every run falls back to
    # synthetic data, as it would on a lent machine without Pillow (and 20 s faster here).
    bundle = str(tmp_path / "no-bundle")
    res = run_script([sys.executable, "scripts/gpu_bench.py", bundle], env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "log.txt").read_text()
    # The build (expected to fail) and then 7 densenet runs, each of which must succeed.
    assert log.count("[rc 0,") == 7, log[-3000:]
    table = (out / "table.txt").read_text()
    assert "data: synthetic" in table
    assert "train 4 epochs, fast off vs on: max |train loss diff| 0;" in table
    for name in ("fp32", "tf32", "cudnn_off"):
        bench = json.loads((out / ("bench_%s.json" % name)).read_text())
        assert bench["environ"]["torch"]
    check = json.loads((out / "train_check.json").read_text())
    assert len(check["epochs"]) == 4 and check["dataset"] == "synthetic"
    assert (out / "probe.json").is_file()


def test_gpu_check_on_cpu_gives_the_expected_verdicts(tmp_path):
    dest = tmp_path / "check"
    env = dict(os.environ, DEVICE="cpu", PYTHON=sys.executable, BATCH_SIZE="4", STEPS="2")
    res = run_script(["scripts/gpu_check.sh", str(dest)], env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = [line for line in (dest / "table.txt").read_text().splitlines() if "tf32-" in line]
    assert len(rows) == 9, rows  # cuDNN on/off x TF32 off/on x clean/canary, + deterministic
    for row in rows:
        name, verdict = row.split()[:2]
        assert verdict == ("fail" if "noncontig-grad" in name else "pass"), row
        assert "unexpected: none" in row, row
    assert len(json.loads((dest / "summary.json").read_text())) == 9
