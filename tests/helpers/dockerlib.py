"""Helpers of the docker tests: a daemon (else a skip, or a failure with REQUIRE_DOCKER=1), the
offline CPU image, and workflow/scripts/run_cell.py started as the workflow starts it."""

import os
import subprocess
import sys
import time

import pytest
from conftest import default_sigint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO, "workflow", "scripts")
LOCK = os.path.join(REPO, "containers", "images.lock.yaml")
CPU_KEY = "cpu-2.13.0"
# A cell that trains for real in about half a minute on two CPU cores.
TINY = "--model densenet-bc40-k12 --dataset synthetic --n-train 200 --n-test 100 --epochs 1 \
--device cpu".split()

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


def unavailable(why):
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail("REQUIRE_DOCKER=1 but %s" % why)
    pytest.skip("%s (CI starts dockerd and sets REQUIRE_DOCKER=1)" % why)


def client_or_skip():
    """A docker client whose daemon answers."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        unavailable("no docker daemon: %s" % str(exc).splitlines()[0])
    return client


def cpu_image_or_skip(client):
    """The lock entry of the offline CPU image, which must be built on this host."""
    import docker
    import image_lock

    entry = image_lock.read_entry(LOCK, CPU_KEY)
    try:
        entry["id"] = client.images.get(entry["tag"]).id
    except docker.errors.ImageNotFound:
        unavailable("image %s is not built (containers/cpu/build.sh)" % entry["tag"])
    return entry


def run_cell_argv(cell_dir, densenet_args, key=CPU_KEY, extra=()):
    script = os.path.join(SCRIPTS, "run_cell.py")
    head = [sys.executable, script, "--runner", "docker", "--torch", key, "--cell-dir", cell_dir]
    return head + ["--gpu", "none"] + list(extra) + ["--"] + list(densenet_args)


def start_cell(cell_dir, densenet_args, key=CPU_KEY, extra=(), env=None):
    """run_cell.py in the background (Popen, output captured as text)."""
    full_env = dict(os.environ, HOME=cell_dir, DENSENET_GIT_SHA="test-sha", **(env or {}))
    return subprocess.Popen(
        run_cell_argv(cell_dir, densenet_args, key, extra),
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )


def run_cell(cell_dir, densenet_args, key=CPU_KEY, extra=(), env=None, timeout=600):
    """run_cell.py to the end: (exit code, its output)."""
    proc = start_cell(cell_dir, densenet_args, key, extra, env)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_for_container(client, cell_dir, ended, timeout=120):
    """The running container of the job writing to cell_dir (found by the runner's label);
    `ended()` says the job is over, so waiting longer is pointless."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = client.containers.list(filters={"label": "org.densenet.cell=" + cell_dir})
        if found:
            return found[0]
        if ended():
            raise AssertionError("the job ended before its container was seen")
        time.sleep(0.2)
    raise AssertionError("no container for %s after %d s" % (cell_dir, timeout))


def containers_of(client, cell_dir):
    """Every container, running or not, that the runner made for cell_dir."""
    return client.containers.list(all=True, filters={"label": "org.densenet.cell=" + cell_dir})
