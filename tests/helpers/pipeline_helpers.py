"""Helpers of the pipeline tests: a throw-away copy of the checkout, Snakemake runs, and the
job counts Snakemake prints."""

import os
import re
import shutil
import subprocess
import sys

from conftest import REPO

COPIED = [
    "Snakefile",
    "profiles",  # the link to workflow/profiles/default: runs here use it, as users' runs do
    "workflow",
    "config",
    "densenet",
    "report",
    "containers/images.lock.yaml",
    "containers/venvs.lock.yaml",
]


def checkout(dest):
    """Copy what the workflow needs (no results, no .snakemake) into dest; returns its path."""
    ignore = shutil.ignore_patterns("__pycache__", "build", ".report*")
    for path in COPIED:
        src, dst = os.path.join(REPO, path), os.path.join(str(dest), path)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=ignore, symlinks=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
    return str(dest)


def snakemake_argv(*args):
    return [sys.executable, "-m", "snakemake"] + [str(a) for a in args]


def snakemake(cwd, *args, timeout=900):
    """Run Snakemake in cwd; the git SHA is fixed since a copy has no .git."""
    env = dict(os.environ, DENSENET_GIT_SHA="test-sha")
    return subprocess.run(
        snakemake_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def job_counts(output):
    """{'train_cell': 96, ...} from the first 'Job stats' table of Snakemake's output."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
