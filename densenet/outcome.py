"""How a command ends: its exit codes, the Skip exception, and one-line messages on stderr."""

import sys

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
    "EXIT_SKIPPED",
    "Skip",
    "note",
    "one_line",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_SKIPPED = 0, 1, 2, 3, 4


class Skip(Exception):
    """The cell cannot run in this environment (not an error of the harness)."""


def note(text: str) -> None:
    """Warnings and state changes go to stderr; stdout carries one progress line per epoch."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
