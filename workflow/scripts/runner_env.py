"""Python environments of the venv runner: one per torch key of containers/venvs.lock.yaml.

    python workflow/scripts/runner_env.py --lock containers/venvs.lock.yaml --key 2.14.1 \
        --dir .venvs/2.14.1

builds (once) a virtual environment at --dir with the entry's Python and pinned requirements,
then writes --dir/runner_env.json (the key, python and torch versions, the requirements), the
workflow's marker that the environment is complete. A build that dies half-way leaves no
marker, and the next build starts from an empty folder. The venv runner
(run_cell.py --runner venv) runs `<dir>/bin/python -m densenet` with the checkout on
PYTHONPATH: no daemon, no container, inside the job's own allocation.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any, Callable, Mapping, Optional

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from densenet import atomic  # noqa: E402  (standard library only at import)
from densenet.argcheck import Parser  # noqa: E402

MARKER = "runner_env.json"
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$")
PYTHON_VERSION = re.compile(r"^3\.[0-9]+$")


class EnvError(Exception):
    """A lock file, entry or interpreter that cannot be used (one line, names the thing)."""


def read_lock(path: str) -> dict[str, Any]:
    """The key -> entry mapping of a venv lock file; EnvError naming the file otherwise."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise EnvError("%s cannot be read (%s)" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise EnvError("%s is not valid YAML (%s)" % (path, str(exc).splitlines()[0])) from None
    venvs = data.get("venvs") if isinstance(data, dict) else None
    if not isinstance(venvs, dict):
        raise EnvError("%s: expected a mapping `venvs: {key: {python, requirements}}`" % path)
    return {str(k): v for k, v in venvs.items()}


def read_entry(path: str, key: str) -> dict[str, Any]:
    """{"key", "python", "requirements"} of `key`, checked: python X.Y, every line pinned."""
    venvs = read_lock(path)
    if key not in venvs:
        raise EnvError(
            "%s has no environment for torch %r (keys: %s)" % (path, key, ", ".join(sorted(venvs)))
        )
    entry = venvs[key]
    python = str(entry.get("python")) if isinstance(entry, dict) else None
    reqs = entry.get("requirements") if isinstance(entry, dict) else None
    if not python or not PYTHON_VERSION.match(python):
        raise EnvError('%s: %s: python must be a version like "3.11", got %r' % (path, key, python))
    if not isinstance(reqs, list) or not reqs:
        raise EnvError("%s: %s: requirements must be a list of name==version" % (path, key))
    for req in reqs:
        if not isinstance(req, str) or not PINNED.match(req):
            raise EnvError(
                "%s: %s: requirement %r is not pinned (name==version)" % (path, key, req)
            )
    return {"key": key, "python": python, "requirements": list(reqs)}


def version_of(python: str) -> Optional[str]:
    """'3.11' of an interpreter, or None when it does not run (a pyenv shim of another)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_python(version: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The interpreter of `version` ("3.8"): $DENSENET_PYTHON_38, python3.8 on PATH, or
    pyenv's ~/.pyenv/versions/3.8.*; EnvError naming what was tried."""
    environ = os.environ if environ is None else environ
    var = "DENSENET_PYTHON_" + version.replace(".", "")
    if environ.get(var):
        found = version_of(environ[var])
        if found != version:
            raise EnvError("%s=%s is not a Python %s (%s)" % (var, environ[var], version, found))
        return environ[var]
    candidates = []
    on_path = shutil.which("python" + version, path=environ.get("PATH"))
    if on_path:
        candidates.append(on_path)
    home = environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(home, "versions", version + ".*", "bin", "python")))
    for candidate in candidates:
        if version_of(candidate) == version:
            return candidate
    raise EnvError(
        "no Python %s interpreter: not python%s on PATH nor under %s/versions (set %s)"
        % (version, version, home, var)
    )


def complete(env_dir: str, entry: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The marker of env_dir when it records this entry's python and requirements, else None."""
    try:
        with open(os.path.join(env_dir, MARKER)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    same = isinstance(marker, dict) and marker.get("requirements") == entry["requirements"]
    return marker if same and marker.get("python", "").startswith(entry["python"]) else None


def build(
    entry: Mapping[str, Any],
    env_dir: str,
    log: Callable[[str], None] = print,
    environ: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    """Make env_dir the entry's environment (nothing to do when its marker matches); returns
    the marker. A partial or outdated folder is removed first."""
    marker = complete(env_dir, entry)
    if marker:
        log("runner_env: %s is complete (torch %s)" % (env_dir, marker["torch"]))
        return marker
    python = find_python(entry["python"], environ)
    if os.path.lexists(env_dir):
        shutil.rmtree(env_dir)
    log("runner_env: %s -m venv %s" % (python, env_dir))
    subprocess.run([python, "-m", "venv", env_dir], check=True)
    pip = [os.path.join(env_dir, "bin", "python"), "-m", "pip", "install", "--no-input"]
    log("runner_env: pip install %s" % " ".join(entry["requirements"]))
    subprocess.run(pip + entry["requirements"], check=True)
    out = subprocess.run(
        [
            os.path.join(env_dir, "bin", "python"),
            "-c",
            "import sys, torch, numpy; print('%d.%d.%d' % sys.version_info[:3], "
            "torch.__version__, numpy.__version__)",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    python_v, torch_v, numpy_v = out.stdout.split()
    marker = {
        "key": entry["key"],
        "python": python_v,
        "torch": torch_v,
        "numpy": numpy_v,
        "requirements": entry["requirements"],
    }
    atomic.write_json(os.path.join(env_dir, MARKER), marker)
    log("runner_env: built %s: python %s, torch %s" % (env_dir, python_v, torch_v))
    return marker


def python_of(env_dir: str) -> str:
    """The interpreter the venv runner starts; RuntimeError when the environment is not built."""
    python = os.path.join(env_dir, "bin", "python")
    if not os.path.exists(os.path.join(env_dir, MARKER)) or not os.access(python, os.X_OK):
        raise RuntimeError(
            "no complete environment at %s (snakemake builds it: rule build_runner_env)" % env_dir
        )
    return python


def main(argv: Optional[list[str]] = None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--lock", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    args = p.parse_args(argv)
    try:
        build(read_entry(args.lock, args.key), args.dir)
    except EnvError as exc:
        sys.stderr.write("runner_env: error: %s\n" % exc)
        return 2
    except subprocess.CalledProcessError as exc:
        sys.stderr.write("runner_env: error: %s exited %d\n" % (exc.cmd[0], exc.returncode))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
