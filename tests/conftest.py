"""Shared fixtures: paths, the offline CIFAR-10 rebuild, and a runner for `python -m densenet`."""

import json
import os
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
        pytest.skip("offline CIFAR-10 rebuild not found at %s" % JPEG75_BUILD)
    cached = os.environ.get("DENSENET_TEST_CIFAR10")
    if cached and os.path.isfile(os.path.join(cached, "cifar-10-batches-py", "test_batch")):
        return cached
    out = str(tmp_path_factory.mktemp("cifar10-jpeg75"))
    subprocess.run([sys.executable, JPEG75_BUILD, out], check=True, capture_output=True)
    return out


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
