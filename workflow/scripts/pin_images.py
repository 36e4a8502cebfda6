"""Pin the registry images of containers/images.lock.yaml to their registry content digests.

    .venv/bin/python workflow/scripts/pin_images.py [--lock FILE] [--update-moved] [KEY ...]

Asks the registry (through the docker daemon: `images.get_registry_data(tag).id`, the
Docker-Content-Digest of the tag's manifest) what each tag points to now, and rewrites the lock
once, atomically, comments kept, for the user to review (`git diff containers/`) and commit.
Runs never write the lock: they read it and run `repository@digest`.

Per key, one line:
  pinned   KEY TAG DIGEST          no digest before; now pinned
  current  KEY TAG DIGEST          the pin is what the tag points to
  moved    KEY TAG OLD -> NEW      the tag was re-pushed since it was pinned; the pin is kept
                                   unless --update-moved (then the line ends in "updated")
  local    KEY TAG                 built on this host (`build:`): identified by its image ID
  error    KEY TAG: WHY            registry unreachable, tag or pinned digest unknown
Exit status: 0 when every pin is current or was written, 1 on any error (the lock is then left
untouched), 3 when tags moved and their old pins were kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

import image_lock

if TYPE_CHECKING:
    from docker import DockerClient

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_ERROR, EXIT_MOVED = 1, 3


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def repository(tag: str) -> str:
    """'pytorch/pytorch:2.5.1-x' -> 'pytorch/pytorch' (a registry's port colon is not a tag)."""
    name, _, last = tag.rpartition(":")
    return name if name and "/" not in last else tag


def registry_digest(client: DockerClient, ref: str) -> str:
    """The registry's content digest of `ref` (a tag or repository@digest)."""
    return client.images.get_registry_data(ref).id


def plan(
    client: DockerClient,
    images: Mapping[str, Mapping[str, Any]],
    keys: Iterable[str],
    update_moved: bool,
) -> tuple[list[str], dict[str, str], int, int]:
    """(report lines, {key: digest} to write, error count, moved-and-kept count)."""
    lines, writes, errors, kept = [], {}, 0, 0
    for key in keys:
        entry = images[key]
        tag, old = entry["tag"], entry.get("digest")
        if entry.get("build"):
            lines.append(
                "local    %s %s (built by %s; its image ID is recorded per cell)"
                % (key, tag, entry["build"])
            )
            continue
        try:
            new = registry_digest(client, tag)
            if old and old != new:
                # The old pin must still be there: a pin the registry lost cannot be pulled.
                registry_digest(client, "%s@%s" % (repository(tag), old))
        except Exception as exc:  # docker's APIError, requests' errors: one line each
            lines.append("error    %s %s: %s" % (key, tag, first_line(exc)))
            errors += 1
            continue
        if not image_lock.DIGEST.match(new or ""):
            lines.append("error    %s %s: the registry answered %r, not a digest" % (key, tag, new))
            errors += 1
        elif old is None:
            lines.append("pinned   %s %s %s" % (key, tag, new))
            writes[key] = new
        elif old == new:
            lines.append("current  %s %s %s" % (key, tag, new))
        elif update_moved:
            lines.append("moved    %s %s %s -> %s updated" % (key, tag, old, new))
            writes[key] = new
        else:
            lines.append(
                "moved    %s %s %s -> %s kept (--update-moved replaces it)" % (key, tag, old, new)
            )
            kept += 1
    return lines, writes, errors, kept


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("keys", nargs="*", metavar="KEY", help="lock keys to pin [all]")
    p.add_argument("--lock", default=os.path.join(REPO, "containers", "images.lock.yaml"))
    p.add_argument("--update-moved", action="store_true", help="replace pins of moved tags")
    args = p.parse_args(argv)
    try:
        images = image_lock.read_images(args.lock)
    except image_lock.LockError as exc:
        print("pin_images: error: %s" % exc, file=sys.stderr)
        return EXIT_ERROR
    unknown = [k for k in args.keys if k not in images]
    if unknown:
        print(
            "pin_images: error: %s has no key %s (keys: %s)"
            % (args.lock, ", ".join(unknown), ", ".join(sorted(map(str, images)))),
            file=sys.stderr,
        )
        return EXIT_ERROR
    import docker

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        print(
            "pin_images: error: docker daemon not reachable at %s (%s)" % (where, first_line(exc)),
            file=sys.stderr,
        )
        return EXIT_ERROR
    lines, writes, errors, kept = plan(client, images, args.keys or list(images), args.update_moved)
    for line in lines:
        print(line)
    if errors:
        print("pin_images: %d error(s); %s left unchanged" % (errors, args.lock), file=sys.stderr)
        return EXIT_ERROR
    if writes:
        try:
            image_lock.write_digests(args.lock, writes, replace=args.update_moved)
        except (image_lock.LockError, OSError) as exc:
            print("pin_images: error: %s" % exc, file=sys.stderr)
            return EXIT_ERROR
        print(
            "pin_images: wrote %d digest(s) to %s; review and commit it" % (len(writes), args.lock),
            file=sys.stderr,
        )
    return EXIT_MOVED if kept else 0


if __name__ == "__main__":
    sys.exit(main())
