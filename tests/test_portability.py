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
    return sorted(glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True))


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


VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def python38():
    """A Python 3.8, looked for as scripts/oldest_torch.sh looks: $PYTHON38 (then it must be a
    working 3.8: a path given on purpose is not silently passed over), pyenv's real 3.8 (its
    shim answers even when 3.8 is not selected), python3.8 on PATH; then the .venv-oldest that
    script makes from it. None if none runs."""
    given = os.environ.get("PYTHON38")
    if given:
        res = subprocess.run([given, "-c", VERSION], capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.strip() == "3.8", (given, res.stdout, res.stderr)
        return given
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates = found[-1:] + [shutil.which("python3.8")]
    candidates.append(os.path.join(REPO, ".venv-oldest", "bin", "python"))
    for py in candidates:
        if py and os.path.exists(py):
            res = subprocess.run([py, "-c", VERSION], capture_output=True, text=True)
            if res.returncode == 0 and res.stdout.strip() == "3.8":
                return py
    return None


def test_byte_compiles_under_python38(tmp_path):
    py38 = python38()
    if py38 is None:
        why = "no Python 3.8 interpreter on this machine (set PYTHON38; vermin still checks syntax)"
        # CI makes .venv-oldest from a Python 3.8 (REQUIRE_OLDEST_TORCH=1): one is there.
        if os.environ.get("REQUIRE_OLDEST_TORCH") == "1":
            pytest.fail(why)
        pytest.skip(why)
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
    from densenet import celldir
    from report import readers

    assert readers.METRIC_COLUMNS == celldir.METRIC_COLUMNS
