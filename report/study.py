"""Which cells and environments a study expects: from the workflow's manifest.json, or (ad hoc,
without a manifest) from the cell directories found under a results folder.

The manifest is what makes a missing cell visible: a cell that never produced a file has no
directory to discover. Cell directories found beside the manifest's cells but not listed in it
are reported too (marked `in_manifest = False`), so nothing on disk is silently ignored.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

PARAM_KEYS = (
    "model",
    "dataset",
    "augment",
    "optimizer",
    "torch",
    "cudnn",
    "tf32",
    "deterministic",
    "canary",
    "seed",
    "protocol",
    "device",
)
ENV_PARAM_KEYS = ("torch", "device", "cudnn", "tf32", "canary")
# A directory holding any of these is a training cell; gradcheck.json alone marks an env dir.
CELL_MARKERS = ("summary.json", "metrics.csv", "failure.json", "checkpoint.pt", "env.json")


class StudyError(Exception):
    """The study's source (manifest or results folder) is unusable; one line naming it."""


class ManifestError(StudyError):
    """The manifest cannot be read; the report refuses rather than guessing the study."""


class Study(object):
    """Expected cells and envs (dicts with id, path, params, ...), plus the study's identity."""

    def __init__(
        self,
        name: str,
        cells: list[dict[str, Any]],
        envs: list[dict[str, Any]],
        manifest: dict[str, Any] | None = None,
        manifest_path: str | None = None,
    ) -> None:
        self.name = name
        self.cells = cells
        self.envs = envs
        self.manifest = manifest or {}
        self.manifest_path = manifest_path
        self.config_hash = self.manifest.get("config_hash")
        self.config = self.manifest.get("config") or {}
        self.dataset_fallback = self.manifest.get("dataset_fallback")


def load_manifest(path: str) -> dict[str, Any]:
    """Parse manifest.json; raises ManifestError with a one-line reason."""
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ManifestError("manifest %s does not exist" % path) from None
    except IsADirectoryError:
        raise ManifestError(
            "manifest %s is a directory, expected the manifest.json file" % path
        ) from None
    except OSError as exc:
        raise ManifestError("manifest %s cannot be read (%s)" % (path, exc.strerror)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError("manifest %s is not valid JSON (%s)" % (path, exc)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise ManifestError("manifest %s has no 'cells' list" % path)
    problem = manifest_problem(manifest)
    if problem:
        raise ManifestError("manifest %s: %s" % (path, problem))
    return manifest


# The types from_manifest and the page rely on (docs/contracts.md, "Study manifest"); null or
# absent is allowed everywhere except for the entries themselves.
TOP_TYPES = {"study": str, "config_hash": str, "config": dict, "dataset_fallback": str}
ENTRY_TYPES = {"id": (str, int), "dir": str, "params": dict, "env": str, "rerun": str}
TYPE_WORDS = {str: "a string", dict: "an object", list: "a list", (str, int): "a string"}


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """None, or one line naming the first value of the manifest whose type is wrong."""
    if manifest.get("envs") is not None and not isinstance(manifest["envs"], list):
        return _wrong("envs", manifest["envs"], list)
    for key, want in TOP_TYPES.items():
        if manifest.get(key) is not None and not isinstance(manifest[key], want):
            return _wrong(key, manifest[key], want)
    for section in ("cells", "envs"):
        for i, entry in enumerate(manifest.get(section) or []):
            where = "%s[%d]" % (section, i)
            if not isinstance(entry, dict):
                return _wrong(where, entry, dict)
            for key, want in ENTRY_TYPES.items():
                value = entry.get(key)
                if value is not None and (not isinstance(value, want) or isinstance(value, bool)):
                    return _wrong("%s.%s" % (where, key), value, want)
    return None


def _wrong(where: str, value: Any, want: type | tuple[type, ...]) -> str:
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return "%s is %s, expected %s" % (where, shown, TYPE_WORDS[want])


def resolve_base(manifest_path: str, dirs: Iterable[str | None]) -> str:
    """The directory the manifest's relative paths start from.

    The workflow writes paths relative to the repository root (where snakemake runs), e.g.
    results/default/cells/<id>; the report may run from elsewhere. Take the first of the
    working directory and the manifest's ancestors under which any listed path exists.
    """
    here = os.path.dirname(os.path.abspath(manifest_path))
    candidates = [os.getcwd()]
    while True:
        candidates.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    for base in candidates:
        if any(os.path.exists(os.path.join(base, d)) for d in dirs if d):
            return base
    return os.getcwd()


def from_manifest(path: str) -> Study:
    """The study a manifest describes, with extra cell dirs found beside its cells."""
    manifest = load_manifest(path)
    entries = manifest["cells"]
    env_entries = manifest.get("envs") or []
    base = resolve_base(path, [c.get("dir") for c in entries + env_entries])
    study_dir = os.path.dirname(os.path.abspath(path))
    cells = []
    for i, entry in enumerate(entries):
        cell_id = str(entry.get("id") or "cell-%d" % i)
        cells.append(
            {
                "id": cell_id,
                "path": os.path.join(base, entry["dir"])
                if entry.get("dir")
                else os.path.join(study_dir, "cells", cell_id),
                "params": {k: _text(v) for k, v in (entry.get("params") or {}).items()},
                "env": entry.get("env"),
                "rerun": entry.get("rerun"),
                "in_manifest": True,
            }
        )
    envs = [
        {
            "id": str(e.get("id")),
            "path": os.path.join(base, e["dir"])
            if e.get("dir")
            else os.path.join(study_dir, "gradcheck", str(e.get("id"))),
            "params": {k: _text(v) for k, v in (e.get("params") or {}).items()},
            "in_manifest": True,
        }
        for e in env_entries
    ]
    known = {os.path.realpath(c["path"]) for c in cells}
    # Only folders inside the study's own directory: never sweep up another study's cells.
    inside = os.path.realpath(study_dir) + os.sep
    parents = sorted({os.path.dirname(c["path"]) for c in cells})
    for parent in (p for p in parents if os.path.realpath(p).startswith(inside)):
        for found in discover_cells(parent, max_depth=1):
            if os.path.realpath(found) not in known:
                known.add(os.path.realpath(found))
                cells.append(_extra_cell(found, parent))
    name = manifest.get("study") or os.path.basename(os.path.dirname(os.path.abspath(path)))
    return Study(str(name), cells, envs, manifest, os.path.abspath(path))


def from_results(results_dir: str) -> Study:
    """An ad-hoc study: every cell and gradcheck directory found under results_dir."""
    if not os.path.isdir(results_dir):
        # os.walk of a missing folder finds nothing: a typo would render an empty report.
        raise StudyError(
            "--results %s %s (expected a folder of cell directories)"
            % (results_dir, "is not a folder" if os.path.exists(results_dir) else "does not exist")
        )
    cells = [_extra_cell(p, results_dir) for p in discover_cells(results_dir)]
    envs = [
        {"id": os.path.basename(p), "path": p, "params": {}, "in_manifest": False}
        for p in discover_envs(results_dir)
    ]
    return Study(os.path.basename(os.path.abspath(results_dir)), cells, envs)


def _extra_cell(path: str, root: str) -> dict[str, Any]:
    cell_id = os.path.relpath(path, root)
    return {
        "id": os.path.basename(path) if cell_id == "." else cell_id,
        "path": path,
        "params": {},
        "env": None,
        "rerun": None,
        "in_manifest": False,
    }


def discover_cells(root: str, max_depth: int = 6) -> list[str]:
    """Directories under root that hold a training cell's files, sorted."""
    return _walk(
        root,
        max_depth,
        lambda names: any(m in names for m in CELL_MARKERS) and "gradcheck.json" not in names,
    )


def discover_envs(root: str, max_depth: int = 6) -> list[str]:
    """Directories under root that hold a gradcheck.json, sorted."""
    return _walk(root, max_depth, lambda names: "gradcheck.json" in names)


def _walk(root: str, max_depth: int, wanted: Callable[[set[str]], bool]) -> list[str]:
    found = []
    root = os.path.abspath(root)
    for here, dirs, names in os.walk(root):
        depth = here[len(root) :].count(os.sep)
        if depth >= max_depth:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if wanted(set(names)):
            found.append(here)
    return sorted(found)


def _text(value: Any) -> str | None:
    """Params as the strings the CLI uses ('on', '0'), so tables group and sort consistently."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value if value is None else str(value)
