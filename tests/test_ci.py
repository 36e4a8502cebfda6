"""CI runs exactly the README's test command, as .ci/run's header promises."""

import os
import re
import subprocess

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
    assert "trap stop_dockerd EXIT" in text
