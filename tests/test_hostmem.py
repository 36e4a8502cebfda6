"""--cpu-malloc (densenet/hostmem.py): it takes effect where glibc is, touches nothing on a GPU
device, and leaves every value a cell computes as it was."""

import ctypes
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, densenet, read_json
from helpers.trainlib import TINY, read_metrics

from densenet import hostmem

try:
    HAVE_GLIBC = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
except OSError:
    HAVE_GLIBC = False
needs_glibc = pytest.mark.skipif(not HAVE_GLIBC, reason="glibc's mallopt is Linux/glibc only")

# In a fresh process: apply a policy, then 20 times fill a 64 MiB tensor and a 12 MiB one and
# free both, as a training step does with its activations; print the page faults of the last
# 10 rounds. Under glibc's defaults the 64 MiB block is mmapped afresh each time (16,384 new
# pages a round); with reuse the heap settles after a few rounds (torch's 64-byte-aligned
# blocks fragment it at first) and then hands the freed blocks back.
REFILL = """
import json, resource, sys, torch
from densenet import hostmem
record = hostmem.configure(sys.argv[1], torch.device("cpu"))
for i in range(20):
    if i == 10:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.ones(16 * 2**20); b = torch.ones(3 * 2**20); del a, b
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"record": record, "faults": faults}))
"""


def refill_faults(policy):
    out = subprocess.run(
        [sys.executable, "-c", REFILL, policy], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_glibc
def test_reuse_hands_freed_memory_back_without_page_faults():
    system, reuse = refill_faults("system"), refill_faults("reuse")
    assert system["record"] == "system (glibc defaults)"
    assert reuse["record"].startswith("reuse (glibc M_MMAP_MAX 0")
    assert system["faults"] > 10 * 16000, system  # 64 MiB of fresh pages every round
    assert reuse["faults"] < 1000, reuse


def test_a_gpu_device_is_left_alone_and_a_bad_policy_named():
    assert hostmem.configure("reuse", torch.device("cuda")) == "not applicable on cuda"
    with pytest.raises(ValueError, match="cpu_malloc: expected reuse or system"):
        hostmem.configure("keep", torch.device("cpu"))


@pytest.mark.slow
def test_cells_compute_the_same_under_either_policy(tmp_path):
    for policy in ("system", "reuse"):
        res = densenet(
            "train", "--out", tmp_path / policy, "--epochs", "2", "--cpu-malloc", policy, *TINY
        )
        assert res.returncode == 0, res.stderr
        env = read_json(tmp_path / policy / "env.json")
        assert env["flags"]["cpu_malloc"].startswith(policy if HAVE_GLIBC else "system")
        # On a CPU the test images go through the model in training-sized batches.
        assert env["config"]["eval_batch_size"] == 64
    assert read_metrics(tmp_path / "reuse" / "metrics.csv") == read_metrics(
        tmp_path / "system" / "metrics.csv"
    )


@needs_glibc
@pytest.mark.slow
def test_the_bench_measures_memory_as_under_glibc_defaults(tmp_path):
    """The bench applies --cpu-malloc after its memory phases: a heap grown under `reuse`
    before them kept the phases' freed blocks resident (bc40 at batch 64: 715 MB against
    516 MB for the normal runner)."""
    args = ["--model", "densenet-bc40-k12", "--batch-size", "32", "--device", "cpu"]
    args += ["--threads", "1", "--steps", "2", "--rounds", "1", "--warmup", "1"]
    args += ["--data-images", "2048", "--data-rounds", "1", "--profile", "off", "--feed", "off"]
    memory = {}
    for policy in ("system", "reuse"):
        out = tmp_path / (policy + ".json")
        res = densenet("bench", "--out", out, "--cpu-malloc", policy, *args)
        assert res.returncode == 0, res.stderr
        result = json.loads(out.read_text())
        assert result["flags"]["cpu_malloc"].startswith(policy)
        memory[policy] = result["steps"]["memory_mb"]
    for runner, mb in memory["system"].items():
        assert abs(memory["reuse"][runner] - mb) <= max(0.05 * mb, 5.0), memory
