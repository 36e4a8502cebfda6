"""Run `python -m densenet ...`, `python -m report ...` or a workflow script with one fault
injected at a deterministic point. Production code carries no test hooks: the faults
are installed here, by replacing module attributes before the target starts.

    python tests/faultinject.py [--kill-at POSITION] [--enospc FILE:N] [--trace-opens LOG]
        [--official-md5 JSON] -- densenet train --out DIR ...   (or: report ..., or x.py ...)

--kill-at      SIGKILL the process at a named POSITION (KILL_POSITIONS below).
--enospc       the Nth atomic write of FILE (a base name) fails with ENOSPC half-way through.
--trace-opens  record every file the process opens (audit hook) into LOG, one JSON per line.
--official-md5 register a test copy's MD5s as the official CIFAR-10 release (we cannot make
               files with the real release's checksums), so that a flipped byte can turn an
               `official` copy into an `unknown` one.
"""

import argparse
import errno
import json
import os
import runpy
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sigkill():
    """Die as `kill -9` does: no handler, no finally, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def raise_enospc(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


class _InterruptedFile(object):
    """A file whose write() stores the first half of the data, makes it durable, then calls
    `fault` (which kills, raises or pauses); `fault` returning means: write the rest."""

    def __init__(self, f, fault):
        self._f, self._fault = f, fault

    def write(self, data):
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()
        os.fsync(self._f.fileno())
        self._fault()
        return half + self._f.write(data[half:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)


class _OsWithFaultyFdopen(object):
    """Stands in for `os` inside an atomic module: everything is the real os, except that
    fdopen() hands out an interrupted file while the owning WriteFault is armed."""

    def __init__(self, owner):
        self._owner = owner

    def fdopen(self, fd, *args, **kwargs):
        f = os.fdopen(fd, *args, **kwargs)
        return _InterruptedFile(f, self._owner.strike) if self._owner.armed else f

    def __getattr__(self, name):
        return getattr(os, name)


class WriteFault(object):
    """Interrupt the `nth` write (None: every one) of a file named `name` (None: any name) made
    through `module.write_bytes` (densenet.atomic or report.atomic: every atomic write goes
    there).

    phase "before": `action(path)` before anything is written; "during": after half of the
    temporary file is written and fsynced (the real mkstemp/fchmod/fdopen path runs up to
    there); "after": once the rename is done. `action` kills, raises, or returns (pause).
    """

    def __init__(self, module, name, nth, phase, action):
        self.name, self.nth, self.phase, self.action = name, nth, phase, action
        self.count, self.armed, self.path = 0, False, None
        self.original = module.write_bytes
        module.write_bytes = self.write_bytes
        module.os = _OsWithFaultyFdopen(self)

    def strike(self):
        self.action(self.path)

    def write_bytes(self, path, data):
        if self.name is not None and os.path.basename(path) != self.name:
            return self.original(path, data)
        self.count += 1
        if self.nth is not None and self.count != self.nth:
            return self.original(path, data)
        self.path = path
        if self.phase == "before":
            self.action(path)
        if self.phase == "during":
            self.armed = True
            try:
                return self.original(path, data)
            finally:
                self.armed = False
        result = self.original(path, data)
        if self.phase == "after":
            self.action(path)
        return result


def kill_on_call(module, attr, nth):
    """Replace module.attr by a wrapper that SIGKILLs the process on its nth call."""
    original, calls = getattr(module, attr), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            sigkill()
        return original(*args, **kwargs)

    setattr(module, attr, wrapper)


def _kill_write(name, nth, phase):
    def install():
        from densenet import atomic

        WriteFault(atomic, name, nth, phase, lambda path: sigkill())

    return install


def _kill_call(attr, nth, module="train"):
    def install():
        import importlib

        kill_on_call(importlib.import_module("densenet." + module), attr, nth)

    return install


# Where a 2-epoch `densenet train` run (300 training images, batch 64: 5 steps per epoch) is
# killed: name -> (what happens, installer). The tests and docs/faults.md use these names.
KILL_POSITIONS = {
    "env-write": (
        "half-way through writing env.json's temp file, before epoch 1",
        _kill_write("env.json", 1, "during"),
    ),
    "epoch1-mid-training": (
        "before the 3rd of 5 training steps of epoch 1",
        _kill_call("augment", 3, module="feed"),  # the training loop's batches (feed.py)
    ),
    "epoch2-evaluation": ("at the start of epoch 2's evaluation", _kill_call("evaluate", 2)),
    "epoch2-checkpoint-write": (
        "half-way through writing epoch 2's checkpoint temp file",
        _kill_write("checkpoint.pt", 2, "during"),
    ),
    "epoch2-after-checkpoint": (
        "after epoch 2's checkpoint rename, before metrics.csv is written",
        _kill_write("checkpoint.pt", 2, "after"),
    ),
    "epoch2-metrics-write": (
        "half-way through writing epoch 2's metrics.csv temp file",
        _kill_write("metrics.csv", 2, "during"),
    ),
    "before-summary": (
        "after the last epoch, before summary.json is written",
        _kill_write("summary.json", 1, "before"),
    ),
    "summary-write": (
        "half-way through writing summary.json's temp file",
        _kill_write("summary.json", 1, "during"),
    ),
    "after-summary": (
        "after summary.json, before checkpoint.pt is removed",
        _kill_write("summary.json", 1, "after"),
    ),
}


def install_enospc(spec):
    """FILE:N -> the Nth atomic write of FILE fails with ENOSPC half-way (densenet and report
    writers both, whichever the target uses)."""
    name, nth = spec.rsplit(":", 1)
    from densenet import atomic as densenet_atomic
    from report import atomic as report_atomic

    for module in (densenet_atomic, report_atomic):
        WriteFault(module, name, int(nth), "during", raise_enospc)


def trace_opens(log_path):
    """Record (path, mode, flags) of every open() and os.open() into log_path at exit."""
    seen = []

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            seen.append({"path": os.path.abspath(path), "mode": args[1], "flags": args[2]})

    sys.addaudithook(hook)
    return lambda: _dump(log_path, seen)


def _dump(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def opened_for_reading(record):
    """True when an audit 'open' record opened the file for reading only."""
    mode, flags = record["mode"], record["flags"] or 0
    if mode is not None:
        return "r" in mode and "+" not in mode
    return flags & (os.O_WRONLY | os.O_RDWR) == 0


def run_target(argv):
    """Run the target as its command line would: `densenet ...` / `report ...` as modules,
    a *.py path as a script."""
    target, rest = argv[0], argv[1:]
    if target.endswith(".py"):
        sys.argv = [target] + rest
        runpy.run_path(target, run_name="__main__")
    else:
        sys.argv = ["python -m " + target] + rest
        runpy.run_module(target, run_name="__main__", alter_sys=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kill-at", choices=sorted(KILL_POSITIONS))
    p.add_argument("--enospc", metavar="FILE:N")
    p.add_argument("--trace-opens", metavar="LOG")
    p.add_argument("--official-md5", metavar="JSON")
    p.add_argument("target", nargs=argparse.REMAINDER)
    args = p.parse_args()
    target = args.target[1:] if args.target[:1] == ["--"] else args.target
    sys.path.insert(0, REPO)
    dump = trace_opens(args.trace_opens) if args.trace_opens else None
    if args.official_md5:
        from densenet import data

        with open(args.official_md5) as f:
            data.OFFICIAL_MD5["cifar10"] = json.load(f)
    if args.kill_at:
        KILL_POSITIONS[args.kill_at][1]()
    if args.enospc:
        install_enospc(args.enospc)
    try:
        run_target(target)
    finally:
        if dump:
            dump()


if __name__ == "__main__":
    main()
