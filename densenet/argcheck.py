"""Argument checks shared by densenet's CLI and the workflow's job scripts (standard library
only: the host imports it without torch). A bad argument is one line naming it, exit 2
(../shared/DESIGN.md), and an output path is checked before any work is done."""

import argparse
import os
from typing import Optional


class Parser(argparse.ArgumentParser):
    """argparse without the usage block before the error: one line, exit 2."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


def path_problem(path: str) -> Optional[str]:
    """None, or why `path` cannot be written: empty (an unset shell variable would write into
    the current directory), or under a file (makedirs would fail there after all the work)."""
    if not path:
        return "expected a non-empty path"
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):  # ends at the root at the latest
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        return "%r lies under the file %s, expected a path in a directory" % (path, above)
    return None


def dir_problem(path: str) -> Optional[str]:
    """path_problem, or `path` is a file where a directory is to be made or reused."""
    if path and os.path.exists(path) and not os.path.isdir(path):
        return "%r is a file, expected a directory" % path
    return path_problem(path)
