"""The Python code is ruff-clean and ruff-formatted (STYLE.md, convention 6); the Snakemake
side (snakefmt, --lint) is checked in tests/test_pipeline_dryrun.py."""

import os
import subprocess
import sys

from conftest import REPO


def ruff(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "ruff")
    return subprocess.run([exe] + list(args), cwd=REPO, capture_output=True, text=True)


def test_ruff_check_clean():
    res = ruff("check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_clean():
    res = ruff("format", "--check", ".")
    assert res.returncode == 0, res.stdout + res.stderr
