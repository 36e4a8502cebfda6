"""CI runs exactly the README's test command, as .ci/run's header promises."""

import os
import re
import subprocess
import sys
import sysconfig

import pytest
from conftest import REPO

CI = os.path.join(REPO, ".ci", "run")


def readme_test_command():
    with open(os.path.join(REPO, "README.md")) as f:
        lines = [line.split("#")[0].strip() for line in f if "-m pytest" in line]
    assert lines, "README.md shows no pytest command"
    return lines[0]


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_test_command()
    with open(CI) as f:
        ci = [line.strip() for line in f]
    # Verbatim, then only the capture of its exit status.
    assert command + " || status=$?" in ci, command


def test_ci_script_is_valid_and_executable():
    assert os.access(CI, os.X_OK)
    subprocess.run(["bash", "-n", CI], check=True)
    with open(CI) as f:
        text = f.read()
    assert re.search(r"^export REQUIRE_DOCKER=1\b", text, re.M)
    assert re.search(r"^scripts/oldest_torch.sh$", text, re.M)
    assert "REQUIRE_OLDEST_TORCH=1" in text
    # The pinning tests need a registry, the version study both offline images.
    assert "REQUIRE_REGISTRY=1" in text and "REQUIRE_VERSIONS=1" in text
    assert re.search(r"apt-get install .*\bdocker-registry\b", text)
    assert re.search(r"^containers/cpu-1\.8\.1/build\.sh\b", text, re.M)
    assert "trap stop_dockerd EXIT" in text
    # The SLURM tests' packages, and their absence a failure (tests/helpers/slurm_cluster.py).
    assert re.search(r"^apt-get install .*\bslurm-wlm slurmdbd munge mariadb-server\b", text, re.M)
    assert re.search(r"^export REQUIRE_SLURM=1$", text, re.M)


def test_host_environment_matches_constraints():
    """setup.sh installs with -c constraints.txt: the running environment must be exactly the
    pinned one, so a new dependency or an upgrade shows here until constraints.txt records it.
    Skipped outside a setup.sh environment (e.g. a hand-made venv)."""
    import importlib.metadata as metadata

    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(REPO, ".venv")):
        pytest.skip("not running in this checkout's .venv (setup.sh makes it)")
    with open(os.path.join(REPO, "constraints.txt")) as f:
        pinned = dict(
            line.strip().split("==") for line in f if line.strip() and not line.startswith("#")
        )
    pinned = {canonical(k): v for k, v in pinned.items()}
    unpinned, different = [], []
    # Only what is installed: sys.path may also hold setuptools' vendored packages (setuptools
    # puts its _vendor folder there once anything in this process imported it, e.g. inductor).
    installed = sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    for dist in metadata.distributions(path=installed):
        name = canonical(dist.metadata["Name"])
        if name in ("pip", "setuptools", "densenet-harness"):  # venv bootstrap, the harness
            continue
        if name not in pinned:
            unpinned.append("%s %s" % (name, dist.version))
        elif pinned[name] != dist.version:
            different.append("%s %s (pinned %s)" % (name, dist.version, pinned[name]))
    assert not unpinned and not different, "unpinned: %s; different: %s" % (unpinned, different)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_each_worker_gets_its_own_share_of_the_cpus():
    import conftest

    assert conftest.worker_cpus({0, 1}, 0, 2) == [0] and conftest.worker_cpus({0, 1}, 1, 2) == [1]
    eight = set(range(8))
    shares = [conftest.worker_cpus(eight, w, 2) for w in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(8)) and len(shares[0]) == 4
    assert conftest.worker_cpus({3}, 1, 2) == [3]  # fewer CPUs than workers: share them


def test_this_run_starts_the_longest_files_first(request):
    """The collected order (the one xdist hands out under --no-loadscope-reorder): every file
    of FILE_SECONDS before the others, longest first, each file's tests together."""
    import conftest

    files = []
    for item in request.session.items:
        name = os.path.basename(item.nodeid.split("::")[0])
        if not files or files[-1] != name:
            files.append(name)
    assert len(files) == len(set(files)), files  # each file's tests together
    listed = [f for f in files if f in conftest.FILE_SECONDS]
    assert files[: len(listed)] == listed
    seconds = [conftest.FILE_SECONDS[f] for f in listed]
    assert seconds == sorted(seconds, reverse=True)
    assert "--no-loadscope-reorder" in request.config.getini("addopts")
