"""The git identity of the code that runs: HEAD's SHA, and "-dirty" when tracked files differ.

A result made from uncommitted code cannot be traced to a commit, so the SHA alone would
mislead: e.g. a copy of a working tree whose .git is older than its files (as a copy shipped to
another machine can be) reads as the old HEAD. `git describe --dirty` marks the same thing;
untracked files are ignored, as there. Standard library only: the host runner imports it
without torch.
"""

import subprocess
from typing import Optional


def _git(path, *args):
    # --no-optional-locks: many cells start at once, and a status that refreshed the index
    # would take index.lock and make a concurrent git command in the checkout fail.
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", path] + list(args),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def describe(path: str) -> Optional[str]:
    """'<sha>' or '<sha>-dirty' for the checkout holding path; None outside a git checkout."""
    sha = _git(path, "rev-parse", "HEAD")
    if not sha:
        return None
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    return sha + "-dirty" if status else sha
