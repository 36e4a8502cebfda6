"""Shared fixtures: paths, the offline CIFAR-10 rebuild, and a runner for `python -m densenet`."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
JPEG75_BUILD = os.path.join(SHARED, "data", "cifar10-jpeg75", "build.py")


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def cifar10_jpeg75(tmp_path_factory):
    """A data dir holding cifar-10-batches-py rebuilt from ../shared (about 20 s, once)."""
    if not os.path.isfile(JPEG75_BUILD):
        why = "offline CIFAR-10 rebuild not found at %s" % JPEG75_BUILD
        # CI has ../shared and sets REQUIRE_SHARED_DATA=1 (.ci/run): there a checkout that is
        # not beside shared/ must fail, not silently skip every real-data test.
        if os.environ.get("REQUIRE_SHARED_DATA") == "1":
            pytest.fail(why + " (REQUIRE_SHARED_DATA=1)")
        pytest.skip(why)
    cached = os.environ.get("DENSENET_TEST_CIFAR10")
    if cached and os.path.isfile(os.path.join(cached, "cifar-10-batches-py", "test_batch")):
        return cached
    out = str(tmp_path_factory.mktemp("cifar10-jpeg75"))
    subprocess.run([sys.executable, JPEG75_BUILD, out], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster with job accounting and two fake GPUs, started once for the
    session from Debian's packages (tests/helpers/slurm_cluster.py: 10-20 s) and stopped at
    its end. Skips when the binaries are missing or not root; CI installs them and sets
    REQUIRE_SLURM=1 (.ci/run), which makes that a failure."""
    from helpers import slurm_cluster as slurm

    why = None
    absent = slurm.missing()
    if absent:
        why = "SLURM binaries not found: %s (apt-get install %s)" % (
            " ".join(absent),
            slurm.PACKAGES,
        )
    elif os.geteuid() != 0:
        why = "the SLURM test cluster runs its daemons as root"
    if why:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(why + " (REQUIRE_SLURM=1)")
        pytest.skip(why)
    root = str(tmp_path_factory.mktemp("slurm"))
    try:
        with slurm.slurm_cluster(root) as cluster:
            yield cluster
    finally:
        # MariaDB's data directory is the bulk of it; the logs stay for a look afterwards.
        shutil.rmtree(os.path.join(root, "mysql", "data"), ignore_errors=True)


@contextlib.contextmanager
def bottleneck_runs(model):
    """Count, per dense layer with a bottleneck (by module name), how often its 1x1 convolution
    runs. The efficient mode must run it twice per training step (forward, then again when
    backward recomputes what checkpointing did not store), the normal mode once: equal results
    alone cannot tell a checkpointed model from one whose efficient flag was silently lost.

    A forward pre-hook, not a forward hook: torch's non-reentrant checkpoint may stop the
    recomputation as soon as the last tensor it needs is saved, inside the convolution, before
    a forward hook would run."""
    from densenet.models import DenseLayer

    counts, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, DenseLayer) and m.conv1 is not None:
            counts[name] = 0

            def count(module, inputs, name=name):
                counts[name] += 1

            handles.append(m.conv1.register_forward_pre_hook(count))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def default_sigint():
    """preexec_fn of a child that a test interrupts with SIGINT: a test run started in the
    background inherits SIGINT ignored (shells do that), the child would inherit it too, and
    the runners rightly leave an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tiny_cell(n_train, n_test):
    """`densenet train` arguments of a tiny CPU cell: densenet-bc40-k12 on synthetic images."""
    model = ["--model", "densenet-bc40-k12", "--dataset", "synthetic", "--device", "cpu"]
    return model + ["--n-train", str(n_train), "--n-test", str(n_test)]


def densenet_argv(args, python=None):
    """`python -m densenet ARGS`, with this interpreter unless `python` names another."""
    return [python or sys.executable, "-m", "densenet"] + [str(a) for a in args]


def densenet(*args, python=None, **kwargs):
    """Run `python -m densenet ARGS` from the repo root; returns the CompletedProcess."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("cwd", REPO)
    return subprocess.run(densenet_argv(args, python), **kwargs)


def start_densenet(*args, python=None):
    """Start `python -m densenet ARGS` in the background, stdout and stderr merged in a pipe."""
    return subprocess.Popen(
        densenet_argv(args, python),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def run_densenet():
    return densenet
