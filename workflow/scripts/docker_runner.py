"""Docker runner: one `python -m densenet` job in a pinned image, given nothing it does not need.

    run(image, argv, cell_dir, data_dir, code_dir, gpu, log, mem_limit=None, client=None) -> int

image     the lock entry (workflow/scripts/image_lock.py) plus `key`, `lock` (its path) and
          `strict` (refuse an image without a pinned digest).
argv      the command inside the container, ["python", "-m", "densenet", SUB, ...], with
          `--out /cell` (and `--data-dir /data`) already there (commands.densenet_argv); the
          runner adds `--image-ref` once the image is resolved (commands.with_image_ref).
cell_dir  host path, mounted read-write at /cell.   data_dir  host path or None, read-only at /data.
code_dir  the checkout holding densenet/; only densenet/ is mounted, read-only, at /code/densenet.
gpu       None (no GPU), or the host GPU index / UUID this job owns (one GPU per job; under a
          scheduler the comma-joined ids it allocated).
log       called with each line of the container's output, as it comes.

Returns the container's exit code; 4 (skipped) when the GPU preflight finds no kernels for
the GPU, after writing the skipped result. Raises RunnerError (one line, with an exit code)
when the job cannot run or is killed from outside: daemon down, image missing or unpinned in
strict mode, OOM kill, daemon lost. On SIGINT/SIGTERM the container is removed and the signal
is delivered again to this process, so the caller ends as it would have without the runner.
When this process is SIGKILLed, a watcher started beside the container removes it.

The container runs as the caller's uid:gid, without network, capabilities, privilege
escalation or the docker socket. HOME is /tmp: an arbitrary uid has no home in the image.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

import docker
from commands import subcommand, with_image_ref
from docker.types import DeviceRequest, Mount
from job_signals import Interrupted, catch_signals, restore_signals

from densenet import atomic  # standard library only at import (the host needs no torch)

if TYPE_CHECKING:
    from types import FrameType

    from docker.models.containers import Container
    from docker.models.images import Image

CODE, CELL, DATA = "/code", "/cell", "/data"
EXIT_NOT_RUN = 125  # docker's own code for "the container could not be run"
EXIT_SKIPPED = 4  # densenet's: the cell cannot run in this environment (docs/contracts.md)
EXIT_SIGKILL = 137
RESULT_FILES = {"train": "summary.json", "gradcheck": "gradcheck.json"}
# Variables of the calling process handed into the container (run_cell.py sets them).
PASSED_ENV = ("DENSENET_GIT_SHA", "DENSENET_HOST", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Processes and threads of one container: torch's thread pools and data workers need a few
# hundred; a fork bomb in a job must not exhaust the host's.
PIDS_LIMIT = 4096


class RunnerError(Exception):
    """The job could not run, or was stopped from outside densenet; str() is one line."""

    def __init__(self, reason: str, exit_code: int = EXIT_NOT_RUN) -> None:
        Exception.__init__(self, reason)
        self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """The daemon's own words when it gave some (APIError.explanation), else str(exc)."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect() -> docker.DockerClient:
    """A client of the daemon that DOCKER_HOST (or the default socket) names, known to answer."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, requests' errors: all mean "no daemon here"
        raise RunnerError(
            "docker daemon not reachable at %s (%s); is dockerd running?" % (where, first_line(exc))
        ) from exc
    return client


# -- the image -------------------------------------------------------------------------------


def repository(tag: str) -> str:
    """'pytorch/pytorch:2.5.1-x' -> 'pytorch/pytorch' (a registry's port colon is not a tag)."""
    name, _, last = tag.rpartition(":")
    return name if name and "/" not in last else tag


def get_or_pull(client: docker.DockerClient, ref: str, log: Callable[[str], None]) -> Image:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        pass
    log("docker_runner: pulling %s" % ref)
    try:
        return client.images.pull(ref)
    except docker.errors.DockerException as exc:
        raise RunnerError(
            "image %s is not on this host and the pull failed: %s" % (ref, first_line(exc))
        ) from exc


PIN_COMMAND = "workflow/scripts/pin_images.py"  # the one writer of the lock's digests


def current_digest(
    client: docker.DockerClient, tag: str, log: Callable[[str], None]
) -> Optional[str]:
    """The registry digest `tag` points to now: the registry's answer, else (registry out of
    reach) the one the local copy was pulled with; None when the image has none (loaded or
    built under that name)."""
    try:
        return client.images.get_registry_data(tag).id
    except Exception as exc:  # APIError, requests' errors: the registry did not answer
        why = first_line(exc)
    try:
        found = client.images.get(tag)
    except docker.errors.DockerException:
        raise RunnerError(
            "image %s is not pinned, not on this host, and its registry did not answer: %s"
            % (tag, why)
        ) from None
    repo = repository(tag)
    digests = [
        d.split("@", 1)[1]
        for d in found.attrs.get("RepoDigests") or []
        if d.split("@", 1)[0] == repo
    ]
    log(
        "docker_runner: warning: registry of %s did not answer (%s); using the local copy"
        % (tag, why)
    )
    return digests[0] if digests else None


def resolve_image(
    client: docker.DockerClient, image: Mapping[str, Any], log: Callable[[str], None]
) -> tuple[str, str]:
    """(what to run, what to record): the pinned image, pulled by digest if needed.

    Registry images run by digest (repo@sha256:...), so a moved tag cannot change what runs.
    The lock is only read: digests are written by the pin command (PIN_COMMAND). Without a
    digest, strict mode refuses; otherwise the digest the tag points to now runs, with a
    warning. Locally built images (`build:` in the lock) have no registry digest: they run
    and are recorded by their image ID.
    """
    tag, digest, key = image["tag"], image.get("digest"), image.get("key")
    if image.get("build"):
        try:
            found = client.images.get(tag)
        except docker.errors.ImageNotFound:
            raise RunnerError(
                "image %s (torch %s) is not built on this host; run %s" % (tag, key, image["build"])
            ) from None
        return found.id, "%s@%s" % (tag, found.id)
    repo = repository(tag)
    if not digest:
        if image.get("strict"):
            raise RunnerError(
                "torch %s (%s) has no digest in %s; strict mode refuses unpinned images "
                "(pin it: %s %s)" % (key, tag, image.get("lock"), PIN_COMMAND, key)
            )
        digest = current_digest(client, tag, log)
        if digest is None:
            found = client.images.get(tag)
            log("docker_runner: warning: %s has no registry digest; recording its image ID" % tag)
            return found.id, "%s@%s" % (tag, found.id)
        log(
            "docker_runner: warning: torch %s is not pinned in %s; running %s@%s, what the "
            "tag points to now (pin it: %s %s)"
            % (key, image.get("lock"), repo, digest, PIN_COMMAND, key)
        )
    found = get_or_pull(client, "%s@%s" % (repo, digest), log)
    return found.id, "%s@%s" % (tag, digest)


# -- the container ---------------------------------------------------------------------------


def caller_user() -> str:
    """uid:gid of this process: the container's files in the cell directory are the caller's."""
    return "%d:%d" % (os.getuid(), os.getgid())


def container_settings(
    run_ref: str,
    image_ref: str,
    argv: Sequence[str],
    cell_dir: str,
    data_dir: Optional[str],
    code_dir: str,
    gpu: Optional[str],
    mem_limit: Optional[str],
) -> dict[str, Any]:
    """Keyword arguments of containers.run: everything the job gets, and nothing else."""
    package = os.path.join(os.path.abspath(code_dir), "densenet")
    mounts = [
        Mount(CODE + "/densenet", package, type="bind", read_only=True),
        Mount(CELL, os.path.abspath(cell_dir), type="bind", read_only=False),
    ]
    if data_dir:
        mounts.append(Mount(DATA, os.path.abspath(data_dir), type="bind", read_only=True))
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env.update(
        DENSENET_IMAGE_REF=image_ref,
        PYTHONPATH=CODE,
        HOME="/tmp",
        USER="densenet",
        LOGNAME="densenet",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.setdefault("DENSENET_HOST", socket.gethostname())
    label = re.sub(r"[^a-zA-Z0-9_.-]", "-", os.path.basename(os.path.abspath(cell_dir)))[:40]
    settings = dict(
        image=run_ref,
        command=list(argv),
        environment=env,
        working_dir=CODE,
        mounts=mounts,
        user=caller_user(),
        network_mode="none",
        privileged=False,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        init=True,  # docker-init as PID 1: signals reach python, zombies are reaped
        name="densenet-%s-%s" % (label, uuid.uuid4().hex[:8]),
        labels={"org.densenet.cell": os.path.abspath(cell_dir)},
        detach=True,
        pids_limit=PIDS_LIMIT,
    )
    if gpu is not None:
        # Comma-separated docker device ids (run_cell.docker_gpu / docker_devices: UUIDs, or a
        # scheduler's own host indices, which follow docker's nvidia-smi order).
        ids = [g for g in str(gpu).split(",") if g]
        settings["device_requests"] = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    if mem_limit:
        # Equal swap limit: the kernel kills at the limit instead of swapping past it.
        settings.update(mem_limit=mem_limit, memswap_limit=mem_limit)
    return settings


def remove(client: docker.DockerClient, name: str) -> None:
    try:
        client.api.remove_container(name, force=True)
    except docker.errors.NotFound:
        pass
    except Exception:  # daemon gone: nothing left to remove through it
        pass


# Run apart from the runner (own session): waits until the runner's end of a pipe closes,
# which the kernel does however the runner ends, SIGKILL included, then removes the container.
REAPER = """
import sys, time
import docker
sys.stdin.buffer.read()
client = docker.from_env()
for _ in range(3):  # a create the daemon was still serving may land after the first remove
    try:
        client.api.remove_container(sys.argv[1], force=True)
    except Exception:
        pass
    time.sleep(1)
"""


def start_reaper(name: str) -> tuple[int, subprocess.Popen[bytes]]:
    """(pipe fd, process): a watcher that removes container `name` once the fd closes."""
    read_end, write_end = os.pipe()  # not inheritable: no other child holds the write end
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", REAPER, name],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives a kill of the runner's process group
        )
    finally:
        os.close(read_end)
    return write_end, proc


def stop_reaper(write_end: int, proc: subprocess.Popen[bytes]) -> None:
    """The container is gone already: end the watcher without its removal round."""
    proc.kill()
    proc.wait()
    os.close(write_end)


@contextlib.contextmanager
def started(client: docker.DockerClient, settings: Mapping[str, Any]) -> Iterator[Container]:
    """A started container that is removed however the block ends: return, error, or
    SIGINT/SIGTERM (the signal is then delivered again, once the container is gone)."""

    caught = []

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        # Only the first signal interrupts: a second Ctrl-C must not cut the cleanup short.
        if not caught:
            caught.append(signum)
            raise Interrupted(signum)

    # Handlers can only be set from the main thread; elsewhere the caller owns signals.
    main = threading.current_thread() is threading.main_thread()
    old = catch_signals(on_signal) if main else {}
    signum = None
    reaper = start_reaper(settings["name"])
    try:
        try:
            yield client.containers.run(**settings)
        except docker.errors.ImageNotFound as exc:
            raise RunnerError(
                "image %s not found: %s" % (settings["image"], first_line(exc))
            ) from exc
        except docker.errors.APIError as exc:
            why = first_line(exc)
            if "device driver" in why:
                why += "; GPU jobs need the NVIDIA Container Toolkit on this host"
            raise RunnerError("docker could not run the container: %s" % why) from exc
    except Interrupted as exc:
        signum = exc.signum
    finally:
        # By name: a signal may land between the container's creation and its return to us.
        remove(client, settings["name"])
        stop_reaper(*reaper)
        restore_signals(old)
    if signum is not None:
        # The restored handler runs before raise_signal returns: SIGTERM ends us, SIGINT
        # raises KeyboardInterrupt. The RunnerError is for a handler that returns.
        signal.raise_signal(signum)
        raise RunnerError("interrupted by signal %d" % signum, 128 + signum)


def stream(container: Container, log: Callable[[str], None]) -> None:
    """Pass the container's output to `log` line by line while it runs."""
    pending = b""
    for chunk in container.logs(stream=True, follow=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            log(line.decode("utf-8", "replace").rstrip("\r"))
    if pending:
        log(pending.decode("utf-8", "replace"))


def run_container(
    client: docker.DockerClient, settings: Mapping[str, Any], log: Callable[[str], None]
) -> int:
    """Run to the end; the exit code, or RunnerError when the kernel or the daemon ended it."""
    with started(client, settings) as container:
        try:
            stream(container, log)
            code = container.wait()["StatusCode"]
            container.reload()
        except (docker.errors.DockerException, OSError) as exc:  # OSError: requests' errors
            raise RunnerError(
                "lost the docker daemon while the container ran: %s" % first_line(exc)
            ) from exc
        state = container.attrs["State"]
    limit = settings.get("mem_limit")
    if state.get("OOMKilled"):
        raise RunnerError(
            "container OOM-killed: it needed more than its memory limit (%s); "
            "raise the rule's mem_mb (snakemake --set-resources RULE:mem_mb=N)"
            % (limit or "none set: the host ran out"),
            code or EXIT_SIGKILL,
        )
    if code == EXIT_SIGKILL:
        raise RunnerError(
            "container killed by SIGKILL (exit 137) from outside; the host's OOM "
            "killer or a `docker kill`?",
            code,
        )
    return code


# -- the GPU preflight -----------------------------------------------------------------------


def preflight(
    client: docker.DockerClient, settings: Mapping[str, Any], log: Callable[[str], None]
) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(environment, None) when the image's torch can use the job's GPU, else (environment or
    None, reason): `python -m densenet env` in the same container settings."""
    probe = dict(
        settings, command=["python", "-m", "densenet", "env"], name=settings["name"] + "-preflight"
    )
    lines = []
    code = run_container(client, probe, lines.append)
    text = "\n".join(lines)
    try:
        env = json.loads(text[text.index("{") : text.rindex("}") + 1])
    except ValueError:
        env = None
    if code != 0 or env is None:
        for line in lines[-20:]:
            log(line)
        return None, "preflight: `python -m densenet env` failed in the image (exit %d)" % code
    arch = env["environ"].get("cuda_arch")
    if not arch:
        return env, (
            "preflight: no CUDA device visible in the container (torch %s, CUDA %s)"
            % (env["environ"]["torch"], env["environ"]["cuda"])
        )
    if not arch.get("supported"):
        return env, "preflight: %s" % arch.get("reason")
    return env, None


def write_skipped(
    cell_dir: str,
    command: Optional[str],
    argv: Sequence[str],
    env: Optional[Mapping[str, Any]],
    reason: str,
) -> None:
    """The result of a cell the preflight skipped, in densenet's own skip formats (train:
    summary.json status `skipped`; gradcheck: gradcheck.json verdict `skipped` with its
    environment), so the report cannot tell who skipped it; env.json for train cells. Other
    subcommands (bench) have no skip format: nothing is written, the log says why."""
    if command not in RESULT_FILES:
        return
    config = {"argv": list(argv)}
    environ, flags = (env["environ"], env.get("flags")) if env else (None, None)
    if command == "gradcheck":
        result = {
            "verdict": "skipped",
            "reasons": [reason],
            "config": config,
            "environ": environ,
            "flags": flags,
        }
    else:
        result = {
            "status": "skipped",
            "reason": reason,
            "final_test_err": None,
            "best_test_err": None,
            "epochs_done": 0,
            "wall_s": 0.0,
            "peak_mem_mb": None,
            "img_per_s": None,
            "config": config,
        }
        if env is not None:
            atomic.write_json(
                os.path.join(cell_dir, "env.json"),
                {"environ": environ, "flags": flags, "dataset": None, "config": config},
            )
    atomic.write_json(os.path.join(cell_dir, RESULT_FILES[command]), result)


def wants_gpu(argv: Sequence[str], gpu: Optional[str]) -> bool:
    """A GPU job: a GPU was assigned, or densenet is told to use CUDA."""
    pairs = zip(argv, list(argv[1:]) + [None])
    return gpu is not None or any(
        a == "--device=cuda" or (a, b) == ("--device", "cuda") for a, b in pairs
    )


# -- the entry point -------------------------------------------------------------------------


def run(
    image: Mapping[str, Any],
    argv: Sequence[str],
    cell_dir: str,
    data_dir: Optional[str],
    code_dir: str,
    gpu: Optional[str],
    log: Callable[[str], None],
    mem_limit: Optional[str] = None,
    client: Optional[docker.DockerClient] = None,
) -> int:
    """Run one job in its pinned image; see the module docstring."""
    client = client or connect()
    run_ref, image_ref = resolve_image(client, image, log)
    argv = with_image_ref(argv, image_ref)
    os.makedirs(cell_dir, exist_ok=True)
    settings = container_settings(
        run_ref,
        image_ref,
        argv,
        cell_dir,
        data_dir,
        code_dir,
        gpu,
        mem_limit,
    )
    log("docker_runner: %s as %s, gpu %s: %s" % (image_ref, settings["user"], gpu, " ".join(argv)))
    if settings["user"].startswith("0:"):
        log("docker_runner: warning: the caller is root, so the container runs as root")
    if wants_gpu(argv, gpu):
        env, reason = preflight(client, settings, log)
        if reason:
            log("docker_runner: skipped: %s" % reason)
            write_skipped(cell_dir, subcommand(argv), argv, env, reason)
            return EXIT_SKIPPED
    return run_container(client, settings, log)
