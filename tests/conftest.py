"""Shared fixtures: paths, the offline CIFAR-10 rebuild, and a runner for `python -m densenet`;
under pytest-xdist, each worker's share of the CPUs, the order that starts the longest files
first, and the lock that lets a `serial` test run alone."""

import contextlib
import fcntl
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


# Seconds per test file in a full run (two workers, each on one core of the 2-core CPU machine
# of tests/README.md), longest first. Under `--dist loadfile --no-loadscope-reorder` xdist hands
# out whole files in collection order; starting the long ones first keeps both workers busy to
# the end instead of leaving one long file alone at the tail. Files not listed follow in their
# usual order. Refresh from a run's `--durations=0` (tests/README.md, "How long it takes").
FILE_SECONDS = {
    "test_gpu_scripts.py": 434,
    "test_slurm_study.py": 237,
    "test_pipeline_run.py": 231,
    "test_venv_runner.py": 169,
    "test_train.py": 151,
    "test_versions.py": 105,
    "test_faults_kill.py": 81,
    "test_recipes_study.py": 80,
    "test_compiled.py": 68,
    "test_registry.py": 55,
    "test_overlap.py": 52,
    "test_slurm_cluster.py": 43,
    "test_faults_diskfull.py": 41,
    "test_hostmem.py": 38,
    "test_faults_corrupt.py": 36,
    "test_faults_data.py": 33,
    "test_docker_runner.py": 29,
    "test_faults_pipeline.py": 26,
    "test_bench.py": 24,
    "test_pipeline_docker.py": 20,
    "test_report_render.py": 16,
    "test_report_e2e.py": 16,
}


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (FILE_SECONDS), each file's tests in their own order. The order is
    the same in every worker, as xdist requires."""
    rank = {}
    for item in items:
        rank.setdefault(item.nodeid.split("::")[0], len(rank))

    def key(item):
        path = item.nodeid.split("::")[0]
        return (-FILE_SECONDS.get(os.path.basename(path), 0), rank[path])

    items.sort(key=key)


def worker_cpus(cpus, worker, workers):
    """The CPUs of xdist worker number `worker` of `workers`: every workers-th one from its
    own index, or all of them where there are fewer CPUs than workers."""
    cpus = sorted(cpus)
    return cpus[worker::workers] if len(cpus) >= workers else cpus


ALL_CPUS = set()  # the CPUs this worker had before pytest_configure pinned it


def pytest_configure(config):
    """Under xdist, pin each worker (and so every process it starts: trainings, Snakemake,
    SLURM daemons) to its own share of the CPUs. torch, OpenMP and Snakemake's `--cores all`
    all size themselves from the process's CPU affinity, so two workers on two cores train
    with one thread each instead of four threads fighting over two cores (2-20x slower
    steps). A `serial` test gets every CPU back while it runs alone (serial_lock)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or workers < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = os.sched_getaffinity(0)
    ALL_CPUS.update(cpus)
    os.sched_setaffinity(0, worker_cpus(cpus, int(worker.lstrip("gw")), workers))


@pytest.fixture(scope="session")
def repo():
    return REPO


def shared_tmp(tmp_path_factory):
    """A folder every xdist worker of this run shares (each worker has a basetemp of its own
    below it); this run's basetemp without xdist."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@contextlib.contextmanager
def flocked(path, mode):
    with open(path, "a") as f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def serial_lock(request, tmp_path_factory):
    """Under xdist, a test marked `serial` runs while no other test does: it holds run.lock
    exclusively, every other test holds it shared. gate.lock makes a waiting serial test go
    first: a worker takes gate.lock only to get its shared lock, and the serial test keeps it
    until it has the exclusive one, so the next test of another worker cannot slip in ahead."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    folder = shared_tmp(tmp_path_factory)
    gate, run = os.path.join(folder, "gate.lock"), os.path.join(folder, "run.lock")
    if request.node.get_closest_marker("serial"):
        with flocked(gate, fcntl.LOCK_EX), flocked(run, fcntl.LOCK_EX):
            if not ALL_CPUS:  # not pinned (-n 1, or no sched_setaffinity)
                yield
                return
            mine = os.sched_getaffinity(0)
            os.sched_setaffinity(0, ALL_CPUS)  # alone now: every CPU
            try:
                yield
            finally:
                os.sched_setaffinity(0, mine)
        return
    with flocked(gate, fcntl.LOCK_EX):
        f = open(run, "a")
        fcntl.flock(f, fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@pytest.fixture(scope="session")
def cifar10_jpeg75(tmp_path_factory):
    """A data dir holding cifar-10-batches-py rebuilt from ../shared (about 20 s, once per run:
    xdist workers share it)."""
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
    folder = shared_tmp(tmp_path_factory)
    out = os.path.join(folder, "cifar10-jpeg75")
    with flocked(os.path.join(folder, "cifar10-jpeg75.lock"), fcntl.LOCK_EX):
        done = out + ".built"
        if not os.path.isfile(done):
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            subprocess.run([sys.executable, JPEG75_BUILD, out], check=True, capture_output=True)
            open(done, "w").close()
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


# The tests' model where what is tested is not the model: one layer per dense block, every code
# path of the paper's DenseNet-BCs, a training step ~7x cheaper than densenet-bc40-k12's.
TINY_MODEL = "densenet-bc10-k12"


def tiny_cell(n_train, n_test):
    """`densenet train` arguments of a tiny CPU cell: TINY_MODEL on synthetic images."""
    model = ["--model", TINY_MODEL, "--dataset", "synthetic", "--device", "cpu"]
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
