"""Docker runner end to end: real cells in the offline CPU image, through run_cell.py as the
workflow starts them; the container's confinement asserted on the running container itself."""

import errno
import importlib
import json
import os
import threading

import pytest
from conftest import read_json
from helpers.dockerlib import (
    LOCK,
    REPO,
    TINY,
    client_or_skip,
    containers_of,
    cpu_image_or_skip,
    run_cell,
    wait_for_container,
)

docker_runner = importlib.import_module("docker_runner")  # dockerlib put it on sys.path

pytestmark = pytest.mark.docker

# Run inside the job's container (same user, mounts and settings): what can it reach?
PROBE = r"""
import json, os, socket

def write(d):
    try:
        with open(os.path.join(d, ".probe"), "w"):
            pass
        os.remove(os.path.join(d, ".probe"))
        return "ok"
    except OSError as exc:
        return exc.errno

def connect():
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("1.1.1.1", 53))
        return "connected"
    except OSError as exc:
        return str(exc)

status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "interfaces": sorted(os.listdir("/sys/class/net")),
    "connect": connect(), "code": write("/code/densenet"), "data": write("/data"),
    "cell": write("/cell"), "tmp": write(os.environ["HOME"]),
    "docker_socket": [p for p in ("/var/run/docker.sock", "/run/docker.sock")
                      if os.path.exists(p)],
    "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
}))
"""


@pytest.fixture(scope="module")
def client():
    return client_or_skip()


@pytest.fixture(scope="module")
def cpu_image(client):
    return cpu_image_or_skip(client)


NON_ROOT = 4242  # the caller's uid and gid when the tests themselves run as root (CI)


def caller(monkeypatch, *dirs):
    """(uid, gid) the container will run as. As root, the caller is made a plain user: the
    runner takes uid:gid from the calling process, and a root caller would get a root
    container, which is not what a user of a GPU host gets."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    monkeypatch.setattr(docker_runner, "caller_user", lambda: "%d:%d" % (NON_ROOT, NON_ROOT))
    for path in dirs:
        os.chown(path, NON_ROOT, NON_ROOT)
    return NON_ROOT, NON_ROOT


@pytest.mark.slow
def test_cell_trains_in_a_locked_down_container(client, cpu_image, tmp_path, monkeypatch):
    cell, data = str(tmp_path / "cell"), str(tmp_path / "data")
    os.makedirs(cell)
    os.makedirs(data)
    uid, gid = caller(monkeypatch, cell)
    image = dict(cpu_image, lock=LOCK, strict=True)
    argv = ["python", "-m", "densenet", "train"] + TINY + ["--out", "/cell", "--data-dir", "/data"]
    lines, seen = [], {}

    def inspect():
        # While the job runs: the daemon's view of the container, and a probe inside it.
        container = wait_for_container(client, cell, lambda: "code" in seen)
        seen["attrs"] = container.attrs
        seen["probe"] = container.exec_run(["python", "-c", PROBE])

    watcher = threading.Thread(target=inspect)
    watcher.start()
    try:
        seen["code"] = docker_runner.run(image, argv, cell, data, REPO, None, lines.append)
    finally:
        seen.setdefault("code", None)
        watcher.join(timeout=120)
    log = "\n".join(lines)
    assert seen["code"] == 0, log
    assert seen["probe"].exit_code == 0, seen["probe"].output
    inside = json.loads(seen["probe"].output.decode())
    attrs = seen["attrs"]

    # The job's result and its record of the image: tag and local image ID.
    assert read_json(os.path.join(cell, "summary.json"))["status"] == "completed"
    environ = read_json(os.path.join(cell, "env.json"))["environ"]
    assert environ["image"]["tag"] == cpu_image["tag"]
    assert environ["image"]["digest"] == cpu_image["id"]
    assert environ["torch"].startswith("2.13.0")
    assert os.stat(os.path.join(cell, "summary.json")).st_uid == uid
    assert any(line.startswith("epoch 1/1") for line in lines)  # streamed line by line
    assert containers_of(client, cell) == []  # removed on exit

    # Settings of the real container, as the daemon reports them.
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == "%d:%d" % (uid, gid)
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"])
    mounts = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
    assert mounts == {"/code/densenet": False, "/data": False, "/cell": True}
    assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])

    # And from inside: the user, no network, read-only code and data, no capabilities.
    assert (inside["uid"], inside["gid"]) == (uid, gid) and uid != 0
    assert inside["interfaces"] == ["lo"]
    assert inside["connect"] != "connected"
    assert inside["code"] == errno.EROFS and inside["data"] == errno.EROFS
    assert inside["cell"] == "ok" and inside["tmp"] == "ok"
    assert inside["docker_socket"] == []
    assert inside["cap_eff"] == "0000000000000000" and inside["no_new_privs"] == "1"


@pytest.mark.slow
def test_gradcheck_runs_in_container(client, cpu_image, tmp_path):
    cell = str(tmp_path)
    code, out = run_cell(
        cell,
        [
            "gradcheck",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--steps",
            "2",
            "--seed",
            "0",
            "--deterministic",
            "on",
        ],
    )
    assert code == 0, out
    result = read_json(os.path.join(cell, "gradcheck.json"))
    assert result["verdict"] == "pass", result.get("reasons")
    assert result["environ"]["image"]["digest"] == cpu_image["id"]


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_gpu_cell_without_kernels_is_skipped_not_failed(client, cpu_image, tmp_path, command):
    # The CPU image has no CUDA at all: the preflight must skip the cell (run_cell exits 0, so
    # Snakemake carries on with the matrix) and say why, in densenet's own result format.
    cell = str(tmp_path)
    args = TINY[:-1] + ["cuda"] if command == "train" else ["--device", "cuda"]
    code, out = run_cell(cell, [command] + args)
    assert code == 0, out
    assert not os.path.exists(os.path.join(cell, "failure.json"))
    if command == "train":
        summary = read_json(os.path.join(cell, "summary.json"))
        assert summary["status"] == "skipped"
        assert "no CUDA device visible" in summary["reason"]
        env = read_json(os.path.join(cell, "env.json"))
        assert env["environ"]["image"]["digest"] == cpu_image["id"]
    else:
        result = read_json(os.path.join(cell, "gradcheck.json"))
        assert result["verdict"] == "skipped"
        assert "no CUDA device visible" in result["reasons"][0]
    assert "preflight" in out


def test_runner_skip_has_densenet_skip_fields(client, cpu_image, tmp_path):
    """The runner's skipped summary.json carries the same keys as densenet's own."""
    import torch
    from conftest import densenet

    # densenet runs on the host with this interpreter's torch. Only a real GPU may excuse the
    # test: any other exit code (a crash, a usage error) is a failure, not "a GPU is here".
    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device, so densenet would train, not skip")
    own = densenet("train", "--out", tmp_path / "own", *(TINY[:-1] + ["cuda"]))
    assert own.returncode == 4, own.stdout + own.stderr
    cell = str(tmp_path / "runner")
    code, out = run_cell(cell, ["train"] + TINY[:-1] + ["cuda"])
    assert code == 0, out
    ours = read_json(os.path.join(cell, "summary.json"))
    assert set(ours) == set(read_json(str(tmp_path / "own" / "summary.json")))
