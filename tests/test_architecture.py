"""The package layout holds: no import cycles inside densenet/ or report/ (imports inside
functions count, relative imports resolved), the modules the host imports without torch stay
standard-library only, and densenet/ and report/ never import each other.

The import graph is read from the sources' ASTs, not by importing them, so a cycle that a lazy
import hides at run time still shows."""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("densenet", "report")
# Imported by the host side (workflow scripts, Snakemake rules) where torch and numpy may be
# missing: the standard library only, at import time.
STDLIB_ONLY = ("densenet.atomic", "densenet.argcheck", "densenet.gitinfo")
BLOCKED = ("torch", "numpy")


def module_files(package, root=REPO):
    """{module name: (path, is_package)} for the .py files of `package` under `root`."""
    out = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(folder, d, "__init__.py")))
        rel = os.path.relpath(folder, root).split(os.sep)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            if name == "__init__.py":
                out[".".join(rel)] = (path, True)
            else:
                out[".".join(rel + [name[:-3]])] = (path, False)
    return out


def imported_names(module, path, is_package):
    """Absolute names of everything `module` imports, anywhere in the file (also inside
    functions); `from X import y` yields X.y (a submodule, or a name that X defines)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = base + "." + node.module if node.module else base
            else:
                base = node.module
            names.extend(base + "." + alias.name for alias in node.names)
    return names


def import_graph(package, root=REPO):
    """{module: set of modules of the same package it imports}, and {module: all imported
    absolute names}."""
    files = module_files(package, root)
    edges, raw = {}, {}
    for module, (path, is_package) in files.items():
        raw[module] = imported_names(module, path, is_package)
        targets = set()
        for name in raw[module]:
            # The longest prefix that is one of the package's modules (`from .x import f` is an
            # edge to x; `from . import x` to x, not to the package).
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges, raw


def find_cycles(edges):
    """Each import cycle once, as a path [a, b, ..., a] (one cycle per strongly connected
    component, found by depth-first search)."""
    cycles, done = [], set()
    for start in sorted(edges):
        if start in done:
            continue
        stack, on_path, index = [(start, iter(sorted(edges[start])))], [start], {start: 0}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.pop()
                del index[node]
                done.add(node)
            elif child in index:
                cycle = on_path[index[child] :] + [child]
                if not any(set(cycle) == set(c) for c in cycles):
                    cycles.append(cycle)
            elif child not in done and child in edges:
                index[child] = len(on_path)
                on_path.append(child)
                stack.append((child, iter(sorted(edges[child]))))
    return cycles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    edges, _ = import_graph(package)
    assert len(edges) > 3, "found no modules of %s under %s" % (package, REPO)
    cycles = find_cycles(edges)
    assert not cycles, "import cycles in %s/:\n%s" % (
        package,
        "\n".join("  " + " -> ".join(c) for c in cycles),
    )


def test_the_cycle_finder_reports_the_path():
    edges = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycles(edges) == [["p.a", "p.b", "p.c", "p.a"]]
    assert find_cycles({"p.a": {"p.b"}, "p.b": set()}) == []


@pytest.mark.parametrize("package, other", [("densenet", "report"), ("report", "densenet")])
def test_the_packages_never_import_each_other(package, other):
    _, raw = import_graph(package)
    bad = sorted(
        "%s imports %s" % (module, name)
        for module, names in raw.items()
        for name in names
        if name == other or name.startswith(other + ".")
    )
    assert not bad, "\n".join(bad)


BLOCKER = """
import sys

class Blocked(object):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %r:
            raise ImportError("%%s is blocked: this module must need the standard library only"
                              %% name)
        return None

sys.meta_path.insert(0, Blocked())
sys.path.insert(0, %r)
import importlib
importlib.import_module(sys.argv[1])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %r)
assert not loaded, loaded
"""


@pytest.mark.parametrize("module", STDLIB_ONLY)
def test_stdlib_only_modules_import_without_torch_and_numpy(module):
    code = BLOCKER % (BLOCKED, REPO, BLOCKED)
    res = subprocess.run(
        [sys.executable, "-c", code, module],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    assert res.returncode == 0, res.stderr


def test_the_blocker_blocks():
    res = subprocess.run(
        [sys.executable, "-c", BLOCKER % (BLOCKED, REPO, BLOCKED), "densenet.models"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    assert res.returncode != 0 and "torch is blocked" in res.stderr
