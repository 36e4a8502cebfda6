"""One GPU per job on a multi-GPU host: each job takes an exclusive file lock named after a
GPU and keeps it while it runs.

Snakemake's `gpu` resource (profiles/gpu-host: --resources gpu=N) caps how many GPU jobs run
at once; it does not say WHICH GPU a job gets. The locks do. They live per host, not per
checkout (GPUs are a host resource), in $DENSENET_GPU_LOCK_DIR or /tmp/densenet-gpu-slots, and
the kernel drops a lock when its holder dies, so a killed job never leaks its GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from typing import Callable, Iterator, Mapping, Optional, Sequence

POLICIES = ("auto", "none", "inherit")


def lock_dir() -> str:
    return os.environ.get("DENSENET_GPU_LOCK_DIR") or "/tmp/densenet-gpu-slots"


def nvidia_smi_gpus() -> list[tuple[str, str]]:
    """[(index, uuid)] of nvidia-smi (PCI bus order); [] without nvidia-smi or GPUs."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    rows = [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines()]
    return [(row[0], row[1]) for row in rows if len(row) == 2 and row[1].startswith("GPU-")]


def host_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set (as given: a scheduler's
    choice), else the UUIDs nvidia-smi lists. A UUID names one GPU for CUDA, for nvidia-smi
    and for docker alike, so the slot and the GPU a container gets cannot disagree."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    return [uuid for _, uuid in nvidia_smi_gpus()]


def docker_device(gpu: str) -> str:
    """The id docker's DeviceRequest takes for slot `gpu`: a UUID as is; an index only when
    CUDA numbers GPUs as nvidia-smi and docker do (CUDA_DEVICE_ORDER=PCI_BUS_ID), since CUDA's
    default order (fastest first) may differ. ValueError (one line) otherwise."""
    gpu = str(gpu)
    if not gpu.isdigit():
        return gpu
    if os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        raise ValueError(
            "GPU %s is a CUDA index: CUDA numbers GPUs fastest first, docker by PCI bus; "
            "set CUDA_VISIBLE_DEVICES to GPU UUIDs (nvidia-smi -L) or CUDA_DEVICE_ORDER=PCI_BUS_ID"
            % gpu
        )
    for index, uuid in nvidia_smi_gpus():
        if index == gpu:
            return uuid
    raise ValueError("GPU %s: nvidia-smi lists no GPU with that index" % gpu)


def open_lock(path: str) -> int:
    """A file descriptor of the lock file `path`, made when missing, usable by every user.

    Made 0666 whatever the umask; opened without O_CREAT when it exists, since a sticky
    world-writable folder with fs.protected_regular refuses O_CREAT on another user's file;
    read-only when another user's file is not writable (flock needs no write access)."""
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        pass
    except PermissionError:
        return os.open(path, os.O_RDONLY)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:  # another job made it just now
        return open_lock(path)
    os.fchmod(fd, 0o666)  # the umask took write access from group and others
    return fd


def inherited(environ: Mapping[str, str]) -> list[str]:
    """Host GPU ids a scheduler allocated to this job, for a container that dockerd starts
    outside the job's cgroup: SLURM_JOB_GPUS / SLURM_STEP_GPUS name the node's own GPU
    indices, whereas CUDA_VISIBLE_DEVICES may be renumbered from 0 inside a device cgroup, so
    it is the fallback (a scheduler without the SLURM variables). [] when none."""
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = environ.get(var)
        if value is not None:
            ids = [g.strip() for g in value.split(",") if g.strip() and g.strip() != "-1"]
            if ids or var == "CUDA_VISIBLE_DEVICES":
                return ids
    return []


def try_lock(path: str) -> Optional[int]:
    """An open fd holding an exclusive lock on path, or None when another job holds it."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def claim(
    policy: str,
    log: Callable[[str], None] = print,
    poll_s: float = 2.0,
    gpus: Optional[Sequence[str]] = None,
) -> Iterator[Optional[str]]:
    """Yield the GPU id this job runs on (a string), or None for CPU / scheduler-chosen.

    auto: take a free GPU of this host (waiting while all are taken); None on a host without
    GPUs. none: None (the runner hides GPUs). inherit: None (a scheduler such as SLURM has
    already set CUDA_VISIBLE_DEVICES; the runner leaves it alone).
    """
    if policy not in POLICIES:
        raise ValueError("--gpu: expected one of %s, got %r" % (", ".join(POLICIES), policy))
    gpus = host_gpus() if gpus is None and policy == "auto" else (gpus or [])
    if policy != "auto" or not gpus:
        yield None
        return
    folder = lock_dir()
    os.makedirs(folder, exist_ok=True)
    try:
        os.chmod(folder, 0o1777)  # other users' jobs on this host share the same GPUs
    except OSError:
        pass
    waited = False
    while True:
        for gpu in gpus:
            fd = try_lock(os.path.join(folder, "gpu-%s.lock" % gpu))
            if fd is not None:
                break
        else:
            if not waited:
                log("all GPUs (%s) are busy; waiting for one" % ", ".join(gpus))
                waited = True
            time.sleep(poll_s)
            continue
        break
    log("GPU slot: %s" % gpu)
    try:
        yield gpu
    finally:
        os.close(fd)
