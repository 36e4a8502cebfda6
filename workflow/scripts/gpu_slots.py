"""One GPU per job on a multi-GPU host: each job takes an exclusive file lock named after a
GPU and keeps it while it runs.

Snakemake's `gpu` resource (profiles/gpu-host: --resources gpu=N) caps how many GPU jobs run
at once; it does not say WHICH GPU a job gets. The locks do. They live per host, not per
checkout (GPUs are a host resource), in $DENSENET_GPU_LOCK_DIR or /tmp/densenet-gpu-slots, and
the kernel drops a lock when its holder dies, so a killed job never leaks its GPU.
"""

import contextlib
import fcntl
import os
import subprocess
import time

POLICIES = ("auto", "none", "inherit")


def lock_dir():
    return os.environ.get("DENSENET_GPU_LOCK_DIR") or "/tmp/densenet-gpu-slots"


def host_gpus():
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(gpus))]


def inherited(environ):
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


def try_lock(path):
    """An open fd holding an exclusive lock on path, or None when another job holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def claim(policy, log=print, poll_s=2.0, gpus=None):
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
