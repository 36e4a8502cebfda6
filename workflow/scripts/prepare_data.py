"""Get one dataset into the data dir (identify | download | build) and record what it is.

    python workflow/scripts/prepare_data.py --dataset cifar10 --data-dir data \
        --action build --builder ../shared/data/cifar10-jpeg75/build.py --out RECORD.json

The record (name, identity, checksums, how it was obtained) is the rule's output; the data
itself stays where the study's config points, outside Snakemake's bookkeeping, so a forced
rerun never deletes an official copy. Errors: one line on stderr, exit 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from densenet import atomic, data  # noqa: E402  (the repo root is not on sys.path by default)
from densenet.argcheck import Parser  # noqa: E402


def build(builder: str, name: str, data_dir: str) -> None:
    """Run the offline builder into a temp dir beside the target, then move the folder into
    place, so an interrupted build never leaves a half-written dataset behind."""
    os.makedirs(data_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=data_dir)
    try:
        subprocess.run([sys.executable, builder, tmp], check=True)
        data.install_folder(name, tmp, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def builder_problem(builder: Optional[str]) -> Optional[str]:
    """None, or why --builder cannot build (checked before the data dir is touched)."""
    if not builder:
        return "required with --action build (the offline builder script)"
    if not os.path.isfile(builder):
        what = "is not a file" if os.path.exists(builder) else "does not exist"
        return "%r %s (expected the offline builder script)" % (builder, what)
    return None


def main(argv: Optional[list[str]] = None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(data.FOLDERS))
    p.add_argument("--data-dir", required=True)
    p.add_argument("--action", required=True, choices=("identify", "download", "build"))
    p.add_argument("--builder", help="offline builder script (--action build)")
    p.add_argument("--require-official", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.action == "build":
        problem = builder_problem(args.builder)
        if problem:
            p.error("argument --builder: " + problem)

    name, data_dir = args.dataset, args.data_dir
    missing = data.missing_files(name, data_dir)
    if missing and args.action == "download":
        print("downloading %s into %s through torchvision" % (name, data_dir), flush=True)
        data.download(name, data_dir)
    elif missing and args.action == "build":
        print(
            "building %s into %s with %s (lossy offline stand-in)" % (name, data_dir, args.builder),
            flush=True,
        )
        build(args.builder, name, data_dir)
    missing = data.missing_files(name, data_dir)
    if missing:
        raise data.DataError(
            "dataset %s: %s missing under %s; put the official python version "
            "there" % (name, ", ".join(missing), data.folder(name, data_dir))
        )
    identity, checksums = data.identify(name, data_dir)
    print("dataset %s under %s: identity %s" % (name, data_dir, identity), flush=True)
    if args.require_official and identity != "official":
        raise data.DataError(
            "dataset %s under %s is %s, not the official release; this study "
            "requires the official data (data.require_official)"
            % (name, data.folder(name, data_dir), identity)
        )
    atomic.write_json(
        args.out,
        {
            "name": name,
            "data_dir": data_dir,
            "action": args.action,
            "identity": identity,
            "checksums": checksums,
            "comparable_with_published": identity == "official",
        },
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (data.DataError, subprocess.CalledProcessError, OSError) as exc:
        sys.stderr.write("error: %s\n" % str(exc).splitlines()[0])
        sys.exit(1)
