"""Where each dataset of a study comes from, decided when Snakemake builds the DAG.

Order (DESIGN.md, "Data"): a copy already under the data dir is identified by checksum; else
the official archive is downloaded through torchvision when the network answers; else the
configured offline builder makes one (a lossy CIFAR-10 rebuild, never official); else, only
where the study allows it, the cells train on `synthetic` and the manifest says so. The choice
changes which cells exist, so it cannot wait until a job runs.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable, Iterable, Mapping, Optional

from study import ConfigError  # sibling module (workflow/scripts)

# The files densenet/data.py loads (FILES there; tests/test_pipeline_config.py keeps the two
# equal). Copied rather than imported: importing densenet pulls in torch, which would cost
# seconds on every `snakemake -n`.
FILES = {
    "cifar10": ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch", "batches.meta"],
    "cifar100": ["train", "test", "meta"],
}
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# The host torchvision downloads CIFAR from; only probed when a dataset is missing.
DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)
# Only CIFAR-10 has an offline rebuild (shared/data/cifar10-jpeg75).
BUILDABLE = ("cifar10",)


def present(name: str, data_dir: str) -> bool:
    folder = os.path.join(data_dir, FOLDERS[name])
    return all(os.path.isfile(os.path.join(folder, f)) for f in FILES[name])


def check_dir(name: str, data_dir: str) -> None:
    """data.dir names the folder *above* cifar-10-batches-py / cifar-100-python. A common slip
    names that folder itself: the plan would not see the files there and would download or
    build a second copy inside it, without saying why."""
    path = os.path.normpath(data_dir)
    # The folder above, absolute where the given path has none to show (data.dir: .).
    above = os.path.dirname(path) or os.path.dirname(os.path.abspath(path))
    if all(os.path.isfile(os.path.join(path, f)) for f in FILES[name]):
        raise ConfigError(
            "config error: data.dir: %s holds the %s files itself; set it to the folder "
            "above (%s), which holds %s" % (data_dir, NAMES[name], above, FOLDERS[name])
        )
    if os.path.basename(path) in FOLDERS.values():
        raise ConfigError(
            "config error: data.dir: %s is a dataset folder itself; set it to the folder "
            "above (%s), where %s goes" % (data_dir, above, FOLDERS[name])
        )


def builder_problem(builder: str) -> Optional[str]:
    """Why the configured builder cannot run (None when it can). A wrong path is the config's
    mistake: with `fallback: none` it is a config error, with `fallback: synthetic` the
    fallback sentence names it (a checkout without ../shared, where the default config's
    builder lives, still runs the default study on synthetic data, loudly)."""
    if not os.path.exists(builder):
        return "data.builder: %s does not exist" % builder
    if not os.path.isfile(builder):
        return "data.builder: %s is not a file (expected the builder script)" % builder
    return None


def network_reachable(address: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """True when a TCP connection to the download host opens within `timeout` seconds
    (name resolution included: it runs in a thread, since getaddrinfo has no timeout)."""
    answer = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            answer.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer)


def network_reachable_once() -> bool:
    """network_reachable(), probed once per Snakemake invocation: the answer goes into the
    environment, which the job processes Snakemake spawns inherit (they re-read the DAG)."""
    cached = os.environ.get("DENSENET_NETWORK")
    if cached not in ("yes", "no"):
        cached = "yes" if network_reachable() else "no"
        os.environ["DENSENET_NETWORK"] = cached
    return cached == "yes"


def action(
    name: str, data_cfg: Mapping[str, Any], network: Callable[[], bool]
) -> tuple[Optional[str], Optional[str]]:
    """(how, why) for one real dataset: how is identify | download | build, or None = fall
    back to synthetic; why names a configured builder that cannot run, else None."""
    builder = data_cfg["builder"]
    can_build = bool(builder) and name in BUILDABLE and not data_cfg["require_official"]
    can_fall_back = data_cfg["fallback"] == "synthetic"
    can_download = data_cfg["download"] in ("auto", "on")
    if present(name, data_cfg["dir"]):
        return "identify", None
    check_dir(name, data_cfg["dir"])
    if can_download and (data_cfg["download"] == "on" or not (can_build or can_fall_back)):
        # Told to, or nothing else to try: no need to probe (it costs seconds on every
        # `snakemake -n`); prepare_data downloads, or fails with its one-line reason.
        return "download", None
    if can_download and network():
        return "download", None
    why = builder_problem(builder) if can_build else None
    if can_build and why is None:
        return "build", None
    if can_fall_back:
        return None, why
    if why:
        raise ConfigError("config error: %s (set the builder script's path, or null)" % why)
    # download off, nothing to build: prepare_data says what is missing at run time.
    return "identify", None


def plan(
    data_cfg: Mapping[str, Any],
    datasets: Iterable[str],
    network: Callable[[], bool] = network_reachable_once,
) -> tuple[dict[str, str], dict[str, str], Optional[str]]:
    """Decide, per dataset of the study, how prepare_data gets it.

    Returns (actions, effective, fallback): actions maps each real dataset kept to
    identify | download | build; effective maps each requested dataset to the one trained on;
    fallback is None or the sentence the manifest and the report show.
    """
    actions, effective, missing, whys = {}, {}, [], []
    for name in datasets:
        effective[name] = name
        if name == "synthetic":
            continue
        how, why = action(name, data_cfg, network)
        if how is None:
            effective[name] = "synthetic"
            missing.append(name)
            whys += [why] if why and why not in whys else []
        else:
            actions[name] = how
    fallback = None
    if missing:
        offline = "not buildable offline" + ("".join(" (%s)" % w for w in whys))
        fallback = (
            "%s not found under %s, not downloadable (no network) and %s: the study trains on "
            "the generated `synthetic` dataset instead, so no published comparison is possible"
            % (" and ".join(NAMES[n] for n in missing), data_cfg["dir"], offline)
        )
    return actions, effective, fallback
