"""containers/images.lock.yaml: read entries; set digests (only the pin command does).

Runs only read the lock. Pinning (workflow/scripts/pin_images.py) edits the `digest:` lines in
place, so the file's comments and order survive (a YAML round trip would drop them), checks
the result parses to exactly the old content plus those digests, and replaces the file
atomically, once. Two pin commands at the same time serialise on a lock of the lock file's
directory and re-read the file under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from typing import Any, Iterator, Mapping

import yaml

from densenet import atomic  # standard library only at import (the host needs no torch)

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")  # a registry content digest


class LockError(Exception):
    """The lock file is missing, malformed, or lacks the entry (one line, names the file)."""


def entries(text: str) -> dict[Any, Any]:
    """The key -> entry mapping of a lock file's text (`images:` or a top-level mapping)."""
    data = yaml.safe_load(text) or {}
    images = data.get("images", data) if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise LockError("expected a mapping `images: {key: {tag, digest}}`")
    return images


def read_images(path: str) -> dict[Any, Any]:
    """The key -> entry mapping of the lock file at `path`; LockError (one line naming the
    file and what is wrong) when it is missing, unreadable, not YAML or not that mapping."""
    try:
        with open(path) as f:
            return entries(f.read())
    except FileNotFoundError:
        raise LockError("%s does not exist" % path) from None
    except IsADirectoryError:
        raise LockError("%s is a directory, expected the lock file" % path) from None
    except OSError as exc:
        raise LockError("%s cannot be read (%s)" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise LockError("%s is not valid YAML (%s)" % (path, yaml_problem(exc))) from None
    except LockError as exc:
        raise LockError("%s: %s" % (path, exc)) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'line 2: expected the node content ...' from a YAMLError (its text spans lines)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:
        return "line %d: %s" % (mark.line + 1, problem)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_entry(path: str, key: str) -> dict[str, Any]:
    """The entry of `key` as a dict with `key` added; LockError when it is not there."""
    images = read_images(path)
    if key not in images:
        raise LockError(
            "%s has no image for torch %r (keys: %s)"
            % (path, key, ", ".join(sorted(map(str, images))))
        )
    if not isinstance(images[key], dict):
        raise LockError(
            "%s: the entry of %r is %r, expected a mapping {tag, digest}" % (path, key, images[key])
        )
    entry = dict(images[key])
    entry["key"] = key
    return entry


@contextlib.contextmanager
def exclusive(path: str) -> Iterator[None]:
    """Hold an exclusive flock on the directory of `path` (the file itself gets replaced)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_digest_text(text: str, key: str, digest: str) -> str:
    """`text` with the digest of entry `key` set; only that line changes (or is added)."""
    lines = text.splitlines(True)
    head = re.compile(r"^(\s*)(['\"]?)%s\2\s*:\s*(#.*)?$" % re.escape(key))
    start = next((i for i, line in enumerate(lines) if head.match(line.rstrip("\n"))), None)
    if start is None:
        raise LockError("no entry line for %r" % key)
    indent = len(head.match(lines[start]).group(1))
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        if (
            stripped
            and not stripped.startswith("#")
            and len(lines[end]) - len(lines[end].lstrip()) <= indent
        ):
            break
        end += 1
    field = re.compile(r"^(\s+)digest\s*:\s*([^#\s]*)(\s*#.*)?$")
    for i in range(start + 1, end):
        m = field.match(lines[i].rstrip("\n"))
        if m:
            lines[i] = "%sdigest: %s%s\n" % (m.group(1), digest, m.group(3) or "")
            break
    else:
        tag_line = next(
            (i for i in range(start + 1, end) if lines[i].strip().startswith("tag")), None
        )
        if tag_line is None:
            raise LockError("entry %r has no tag line" % key)
        pad = lines[tag_line][: len(lines[tag_line]) - len(lines[tag_line].lstrip())]
        lines.insert(tag_line + 1, "%sdigest: %s\n" % (pad, digest))
    return "".join(lines)


def write_digest(path: str, key: str, digest: str) -> bool:
    """Record `digest` for `key` in the lock file; returns False when it was already there.

    Refuses (LockError) when the file holds another digest for the key: replacing a pin is
    `write_digests(..., replace=True)`, a decision the pin command leaves to its user.
    """
    return bool(write_digests(path, {key: digest}))


def write_digests(path: str, digests: Mapping[str, str], replace: bool = False) -> list[str]:
    """Set the digest of each key of `digests` ({key: sha256:...}) in one atomic rewrite;
    returns the keys whose line changed. An existing different pin is replaced only when
    `replace`, else LockError; nothing is written when any key fails."""
    for digest in digests.values():
        if not DIGEST.match(digest or ""):
            raise LockError("refusing to record %r: not a sha256 content digest" % (digest,))
    with exclusive(path):
        with open(path) as f:
            text = f.read()
        old = entries(text)
        expected, changed, new_text = dict(old), [], text
        for key, digest in sorted(digests.items()):
            if key not in old:
                raise LockError("%s has no entry %r" % (path, key))
            current = (old.get(key) or {}).get("digest")
            if current == digest:
                continue
            if current and not replace:
                raise LockError("%s already pins %s to %s, not %s" % (path, key, current, digest))
            new_text = set_digest_text(new_text, key, digest)
            expected[key] = dict(old[key], digest=digest)
            changed.append(key)
        if not changed:
            return []
        if entries(new_text) != expected:
            raise LockError("%s: editing the digests changed more than their lines" % path)
        atomic.write_text(path, new_text)
    return changed
