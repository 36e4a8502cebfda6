"""Run one `python -m densenet` job (train, gradcheck, bench) for the workflow (docs/contracts.md).

    python workflow/scripts/run_cell.py --runner local|docker|venv --torch KEY --cell-dir DIR
        [--data-dir DIR] [--lock containers/images.lock.yaml] [--strict-digests]
        [--venv-dir .venvs] [--gpu auto|none|inherit] [--threads N] [--mem-mb N]
        -- SUBCOMMAND [densenet args]

local: this environment's python. venv: the python of VENV_DIR/KEY (runner_env.py builds it),
in this process's allocation (a SLURM job's CPUs, memory and GPU). docker: the pinned image of
KEY, given the GPU of the slot allocator (by UUID), or under `--gpu inherit` the GPUs the
scheduler allocated (gpu_slots.inherited); a GPU job without one is a failure, not a CPU run.

Appends --out (and --data-dir) as the started process sees them, streams its log to stdout,
and exits 0 when the job produced a result (train: summary.json completed, diverged or
skipped; gradcheck: gradcheck.json with a verdict; bench: the probe file, --out is
DIR/probe.json): results are not retried. Any other end is
a failure: failure.json in the cell directory (Snakemake deletes a failed job's declared
output, so this is where the report finds why), and the child's exit code. An interrupted job
(SIGINT/SIGTERM) leaves no failure.json: the cell stays resumable from its checkpoint.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, REPO]

import gpu_slots  # noqa: E402  (sibling modules; workflow/scripts is not a package)
import runner_env  # noqa: E402
from commands import densenet_argv  # noqa: E402
from job_signals import Interrupted, catch_signals, restore_signals  # noqa: E402

from densenet import atomic, gitinfo  # noqa: E402  (standard library only: no torch here)
from densenet.argcheck import Parser, dir_problem  # noqa: E402

if TYPE_CHECKING:
    from types import FrameType

RESULTS = {"train": "summary.json", "gradcheck": "gradcheck.json", "bench": "probe.json"}
# Subcommands whose --out is a file in the cell directory rather than the directory itself.
OUT_IS_FILE = ("bench",)
RESULT_STATUSES = ("completed", "diverged", "skipped")
LOG_TAIL_LINES = 60
CONTAINER_CELL, CONTAINER_DATA = "/cell", "/data"


class Log(object):
    """Echo the job's lines to stdout (Snakemake's log) and keep the last ones for failure.json."""

    def __init__(self) -> None:
        self.tail = collections.deque(maxlen=LOG_TAIL_LINES)

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")
        self.tail.append(line)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def host_environ() -> dict[str, str]:
    """What densenet cannot see from inside a container: the host's git SHA and name."""
    env = {"DENSENET_HOST": os.environ.get("DENSENET_HOST") or platform.node()}
    sha = os.environ.get("DENSENET_GIT_SHA") or gitinfo.describe(REPO)
    if sha:
        env["DENSENET_GIT_SHA"] = sha
    return env


def die_with_parent() -> None:
    """Child side of Popen: get SIGTERM if the runner dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def out_path(command: str, cell_dir: str) -> str:
    """What --out names: the cell directory, or the result file in it (bench)."""
    if command in OUT_IS_FILE:
        return "%s/%s" % (cell_dir.rstrip("/"), RESULTS[command])
    return cell_dir


def run_local(
    argv: Sequence[str],
    cell_dir: str,
    data_dir: Optional[str],
    gpu_policy: str,
    gpu: Optional[str],
    threads: int,
    log: Callable[[str], None],
    python: Optional[str] = None,
) -> int:
    """Run `python -m densenet` in this environment (or with the interpreter `python`, the venv
    runner's); return its exit code."""
    python = python or sys.executable
    argv = densenet_argv(python, argv, out_path(argv[0], cell_dir), data_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **host_environ())
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    elif gpu_policy == "none":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log("run_cell: %s" % " ".join(argv))
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )

    def forward(signum: int, frame: Optional[FrameType]) -> NoReturn:
        # The child may have had the signal already (Ctrl-C reaches the whole process
        # group); SIGTERM ends it either way, and its last checkpoint is complete.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        raise Interrupted(signum)

    old = catch_signals(forward)
    try:
        for line in proc.stdout:
            log(line)
        return proc.wait()
    except Interrupted:
        proc.wait()
        raise
    finally:
        restore_signals(old)


def docker_gpu(
    args: argparse.Namespace, gpu: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The GPU(s) a docker job's container gets: the slot allocator's, or under `--gpu inherit`
    the scheduler's allocation (comma-joined host ids). Under `inherit`, RuntimeError when a
    job that asked for a GPU (--device cuda) was allocated none: dockerd starts containers
    outside the job's cgroup, so without an explicit device the container would see no GPU or,
    worse, all of them. Without a scheduler (`auto` on a host without GPUs, `none`) the
    container starts GPU-less and densenet's preflight skips the cell, saying why."""
    if gpu is not None or args.gpu != "inherit":
        return gpu
    ids = gpu_slots.inherited(os.environ if environ is None else environ)
    gpu = ",".join(ids) if ids else None
    if gpu is None and wants_cuda(args.command):
        raise RuntimeError(
            "the job asks for --device cuda but no GPU was allocated to it "
            "(--gpu %s; CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS empty)" % args.gpu
        )
    return gpu


def wants_cuda(argv: Sequence[str]) -> bool:
    pairs = zip(argv, list(argv[1:]) + [None])
    return any(a == "--device=cuda" or (a, b) == ("--device", "cuda") for a, b in pairs)


def run_docker(
    argv: Sequence[str],
    cell_dir: str,
    data_dir: Optional[str],
    args: argparse.Namespace,
    gpu: Optional[str],
    log: Callable[[str], None],
) -> int:
    """Run the job in the pinned image of args.torch (workflow/scripts/docker_runner.py)."""
    if gpu is not None:
        # The slot allocator's GPU: docker numbers GPUs as nvidia-smi does, CUDA may not, so
        # docker gets its UUID (gpu_slots.docker_device). A scheduler's allocation (below) is
        # already the node's own indices, in docker's order.
        try:
            gpu = gpu_slots.docker_device(gpu)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
    gpu = docker_gpu(args, gpu)
    try:
        import docker_runner
        import image_lock
    except ImportError as exc:
        raise RuntimeError("--runner docker cannot start: %s" % exc) from None
    image = image_lock.read_entry(args.lock, args.torch)
    image.update(lock=os.path.abspath(args.lock), strict=args.strict_digests)
    out = out_path(argv[0], CONTAINER_CELL)
    argv = densenet_argv("python", argv, out, CONTAINER_DATA if data_dir else None)
    # docker_runner hands the DENSENET_* and thread variables of this process to the container.
    os.environ.update(host_environ())
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    cell_dir = os.path.abspath(cell_dir)
    data_dir = os.path.abspath(data_dir) if data_dir else None
    mem_limit = "%dm" % args.mem_mb if args.mem_mb else None
    return docker_runner.run(image, argv, cell_dir, data_dir, REPO, gpu, log, mem_limit=mem_limit)


def outcome(command: str, cell_dir: str) -> tuple[bool, Optional[str]]:
    """(ok, reason): did the child leave a result that is not a failure?"""
    name = RESULTS.get(command)
    if not name:
        return False, "unknown subcommand %r" % command
    path = os.path.join(cell_dir, name)
    if not os.path.exists(path):
        return False, "no %s was written" % name
    result = read_json(path)
    if not isinstance(result, dict):
        # A torn or damaged result is never taken for one: the job is failed.
        return False, "%s is corrupt (not a readable JSON object)" % name
    if command == "train":
        status = result.get("status")
        return status in RESULT_STATUSES, result.get("reason") or "status %s" % status
    if command == "gradcheck":
        return "verdict" in result, "gradcheck.json has no verdict"
    return True, None


def child_error(lines: Sequence[str]) -> Optional[str]:
    """The text of the child's last `error:` line (densenet's one-line failure or usage
    error, e.g. "python -m densenet train: error: argument --model: ..."), or None."""
    for line in reversed(lines):
        head, sep, text = line.partition("error: ")
        if sep and (not head or head.endswith(": ")) and not head.startswith("run_cell"):
            return text.strip() or None
    return None


def prepare_dir(cell_dir: str, command: str) -> None:
    """Make the cell directory and remove the stale verdicts of an earlier run, which must
    not decide this one (OSError, e.g. a directory where summary.json should be)."""
    os.makedirs(cell_dir, exist_ok=True)
    for name in ("failure.json", RESULTS.get(command)):
        if name and os.path.lexists(os.path.join(cell_dir, name)):
            os.remove(os.path.join(cell_dir, name))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", required=True, choices=("local", "docker", "venv"))
    p.add_argument("--torch", required=True, help="lock key (docker, venv) or `local`")
    p.add_argument("--cell-dir", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--lock", default=os.path.join(REPO, "containers", "images.lock.yaml"))
    p.add_argument("--strict-digests", action="store_true")
    p.add_argument(
        "--mem-mb", type=int, default=0, help="docker: the container's memory limit (rule mem_mb)"
    )
    p.add_argument("--venv-dir", default=".venvs", help="venv runner: the folder of VENV_DIR/KEY")
    p.add_argument("--gpu", choices=gpu_slots.POLICIES, default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- SUBCOMMAND [densenet args]")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        p.error("give the densenet subcommand after --, e.g. -- train --model densenet-bc40-k12")
    for flag in ("--out", "--data-dir"):
        if flag in args.command:
            p.error("%s is set by the runner; leave it out of the densenet arguments" % flag)
    problem = dir_problem(args.cell_dir)
    if problem:
        p.error("argument --cell-dir: " + problem)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    command, cell_dir = args.command[0], args.cell_dir
    try:
        prepare_dir(cell_dir, command)
    except OSError as exc:  # no permission, a full disk: no job ran, nothing to record
        where = exc.filename or cell_dir
        sys.stderr.write("run_cell: error: --cell-dir: %s: %s\n" % (where, exc.strerror))
        return 1
    failure_path = os.path.join(cell_dir, "failure.json")
    log = Log()
    try:
        with gpu_slots.claim(args.gpu, log) as gpu:
            if args.runner in ("local", "venv"):
                python = None
                if args.runner == "venv":
                    python = runner_env.python_of(os.path.join(args.venv_dir, args.torch))
                code = run_local(
                    args.command, cell_dir, args.data_dir, args.gpu, gpu, args.threads, log, python
                )
            else:
                code = run_docker(args.command, cell_dir, args.data_dir, args, gpu, log)
    except Interrupted as exc:
        log("run_cell: %s; the cell can resume from its checkpoint" % exc)
        return 128 + exc.signum
    except KeyboardInterrupt:
        log("run_cell: interrupted; the cell can resume from its checkpoint")
        return 130
    except Exception as exc:  # the job could not run (image missing, daemon down): record it
        text = str(exc).strip().splitlines()
        reason = "runner %s: %s" % (args.runner, text[0] if text else type(exc).__name__)
        code = getattr(exc, "exit_code", None) or 1
        log("error: " + reason)
    else:
        ok, reason = outcome(command, cell_dir)
        if ok:
            return 0
        name = RESULTS.get(command)
        if name is None or not os.path.exists(os.path.join(cell_dir, name)):
            # No result to read a reason from: the child's own one-line error says why.
            reason = child_error(log.tail) or reason
        code = code or 1  # exit 0 without a result is still a failure
    record = {
        "status": "failed",
        "reason": reason,
        "exit_code": code,
        "log_tail": list(log.tail),
        "runner": args.runner,
    }
    try:
        atomic.write_json(failure_path, record)
    except OSError as exc:  # a full disk: the job still fails, with the reason in its log
        log("run_cell: cannot write %s: %s" % (failure_path, exc))
    log("run_cell: failed (exit %d): %s; see %s" % (code, reason, failure_path))
    return code


if __name__ == "__main__":
    sys.exit(main())
