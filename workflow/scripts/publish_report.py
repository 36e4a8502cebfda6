"""Publish a study's report: rendered by `python -m report`, one at a time, swapped in whole.

    python workflow/scripts/publish_report.py --manifest results/S/manifest.json \
        --out results/S/report [--progress]

Renders run under a file lock beside the manifest and write into a temporary folder that
replaces --out only when complete, so a reader never sees half a report. --progress is the
re-render after each finished cell: it never waits (another render holding the lock will
show this cell, or the final render will), never fails its job, and says why it skipped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)  # densenet.argcheck (standard library only)

from densenet.argcheck import Parser  # noqa: E402


def swap_in(tmp: str, out: str) -> None:
    """Replace the folder `out` by `tmp` (two renames; `out` is missing only in between)."""
    old = None
    if os.path.isdir(out):
        old = tempfile.mkdtemp(prefix=".report-old-", dir=os.path.dirname(out))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def render(manifest: str, out: str) -> int:
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".report-new-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is for reading
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
        code = subprocess.call(
            [sys.executable, "-m", "report", "--manifest", manifest, "--out", tmp], env=env
        )
        if code == 0:
            swap_in(tmp, out)
        return code
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--progress", action="store_true", help="best effort: never wait, never fail")
    args = p.parse_args(argv)

    if not os.path.isfile(os.path.join(REPO, "report", "__main__.py")):
        print("publish_report: the report package (report/__main__.py) is missing", flush=True)
        return 0 if args.progress else 1
    if args.progress and not os.path.isfile(args.manifest):
        print("publish_report: no %s yet; progress render skipped" % args.manifest, flush=True)
        return 0
    lock_path = os.path.join(os.path.dirname(os.path.abspath(args.manifest)), ".report.lock")
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if args.progress else 0))
        except OSError:
            print("publish_report: another render is running; progress render skipped", flush=True)
            return 0
        code = render(args.manifest, args.out)
    if code and args.progress:
        print("publish_report: progress render failed (exit %d); the job goes on" % code)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
