"""densenet/ runs inside old images: Python 3.8 syntax, only stdlib + torch + numpy imports,
and it never imports report/ (the cell directory is the only contract between them)."""

import ast
import glob
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

PKG = os.path.join(REPO, "densenet")
ALLOWED_THIRD_PARTY = {"torch", "numpy", "torchvision"}  # torchvision only lazily (download)


def py_files():
    return sorted(glob.glob(os.path.join(PKG, "*.py")))


def test_vermin_target_38():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.fail("vermin is not installed (pip install -e '.[test]')")
    res = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", "--eval-annotations", PKG],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_byte_compiles_under_python38(tmp_path):
    # pyenv's shim answers even when 3.8 is not selected: prefer the real interpreter.
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    py38 = found[-1] if found else shutil.which("python3.8")
    if not py38 or subprocess.run([py38, "-V"], capture_output=True).returncode != 0:
        pytest.skip("no Python 3.8 interpreter on this machine (vermin still checks syntax)")
    for path in py_files():
        res = subprocess.run(
            [py38, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())", path],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, path + ": " + res.stderr


def test_imports_only_stdlib_torch_numpy():
    stdlib = set(sys.stdlib_module_names)
    for path in py_files():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED_THIRD_PARTY, "%s imports %s" % (path, name)
                assert top != "report", path


def test_reader_and_writer_agree_on_metrics_columns():
    """densenet/ and report/ may not import each other, so each names metrics.csv's columns."""
    from densenet import train
    from report import readers

    assert readers.METRIC_COLUMNS == train.METRIC_COLUMNS
