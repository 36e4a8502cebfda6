"""GPU slots shared by every user of a host: lock files another user made are usable (tested
with `runuser -u nobody` when run as root), and the GPU a container gets is named by UUID,
so it cannot disagree with the slot."""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from helpers.dockerlib import SCRIPTS

gpu_slots = importlib.import_module("gpu_slots")  # dockerlib put workflow/scripts on sys.path
# The system's interpreter: other users may not reach root's venv or pyenv.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

CLAIM = (
    "import sys; sys.path.insert(0, sys.argv[1]); import gpu_slots\n"
    "with gpu_slots.claim('auto', lambda _: None, gpus=['GPU-a', 'GPU-b']) as gpu:\n"
    "    print(gpu)\n"
)


@pytest.fixture
def shared(tmp_path):
    """A folder every user can reach, holding a copy of gpu_slots.py (standard library only,
    so any python3 runs it; the checkout and the venv may be closed to other users)."""
    top = tempfile.mkdtemp(prefix="densenet-slots-test-")
    os.chmod(top, 0o755)
    shutil.copy(os.path.join(SCRIPTS, "gpu_slots.py"), top)
    os.chmod(os.path.join(top, "gpu_slots.py"), 0o644)
    yield top
    shutil.rmtree(top)


def claim_as(user, top):
    """Claim a slot in top/slots as `user` (a fresh process): the GPU it got."""
    env = dict(os.environ, DENSENET_GPU_LOCK_DIR=os.path.join(top, "slots"))
    argv = [PYTHON, "-c", CLAIM, top]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.skipif(
    os.getuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser"
)
def test_lock_files_of_one_user_are_usable_by_another(shared):
    folder = os.path.join(shared, "slots")
    old = os.umask(0o022)  # the usual umask: without care the lock file would be 0644
    try:
        assert claim_as(None, shared) == "GPU-a"  # root makes the folder and gpu-GPU-a.lock
    finally:
        os.umask(old)
    mode = os.stat(os.path.join(folder, "gpu-GPU-a.lock")).st_mode & 0o777
    assert mode == 0o666
    assert claim_as("nobody", shared) == "GPU-a"  # root's file, opened by nobody
    assert claim_as("nobody", shared) == "GPU-a"
    # A file nobody made (in the root-owned sticky folder) is usable by root and by nobody.
    os.remove(os.path.join(folder, "gpu-GPU-a.lock"))
    assert claim_as("nobody", shared) == "GPU-a"
    assert os.stat(os.path.join(folder, "gpu-GPU-a.lock")).st_mode & 0o777 == 0o666
    assert claim_as(None, shared) == "GPU-a"


def test_read_only_lock_file_still_locks(tmp_path, monkeypatch):
    # Made 0644 by another user before this fix: open read-only, flock still excludes.
    monkeypatch.setenv("DENSENET_GPU_LOCK_DIR", str(tmp_path))
    path = tmp_path / "gpu-GPU-a.lock"
    path.write_text("")
    os.chmod(str(path), 0o444)
    real_open = os.open

    def as_other_user(p, flags, *mode):
        if p == str(path) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", p)
        return real_open(p, flags, *mode)

    monkeypatch.setattr(gpu_slots.os, "open", as_other_user)
    with gpu_slots.claim("auto", lambda _: None, gpus=["GPU-a", "GPU-b"]) as first:
        with gpu_slots.claim("auto", lambda _: None, gpus=["GPU-a", "GPU-b"]) as second:
            assert (first, second) == ("GPU-a", "GPU-b")


def test_docker_gets_the_gpu_by_uuid(monkeypatch):
    uuid = "GPU-12345678-1234-1234-1234-123456789abc"
    assert gpu_slots.docker_device(uuid) == uuid
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with pytest.raises(ValueError, match="CUDA numbers GPUs fastest first") as caught:
        gpu_slots.docker_device("1")
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setattr(gpu_slots, "nvidia_smi_gpus", lambda: [("0", "GPU-x"), ("1", uuid)])
    assert gpu_slots.docker_device("1") == uuid
    monkeypatch.setattr(gpu_slots, "nvidia_smi_gpus", lambda: [("0", uuid)])
    assert gpu_slots.host_gpus.__doc__ and gpu_slots.docker_device("0") == uuid


def test_host_gpus_are_uuids_without_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "nvidia_smi_gpus", lambda: [("0", "GPU-b"), ("1", "GPU-a")])
    assert gpu_slots.host_gpus() == ["GPU-b", "GPU-a"]
