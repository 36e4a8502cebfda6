"""Predict each cell's training time from cost probes, before the study runs.

    python workflow/scripts/predict_cost.py --manifest results/<study>/manifest.json \
        --out results/<study>/predicted_cost.json PROBE.json [PROBE.json ...]

A probe is the JSON of `python -m densenet bench --probe` (densenet/bench/probe.py): per model and
optimizer the median step time, per model eval time per image and checkpoint write time, the
augmentation time per image, the protocol table and the dataset sizes. For each manifest cell:

    epoch_ms = ceil(n_train / batch) * step_ms * batch / probe_batch
               + n_train * augment_ms_per_img + n_test * eval_ms_per_img + checkpoint_ms
    predicted_s = epochs * epoch_ms / 1000      (process start and data loading not included)

The host memory a cell needs is the probe's resident-set peak of that model (its steps,
evaluation and checkpoint, with the interpreter, libraries and images the probe held), plus the
cell's data set where it is larger than the probe's (at the probe's MB per image; a real data
set is loaded whole, train and test, whatever subset the cell then cuts):

    predicted_mem_mb = peak_host_mb + max(0, images * host_data_mb / host_data_images
                                             - host_data_mb)

Output (atomic): {cell_id: {"predicted_s", "predicted_mem_mb", "basis", "epoch_s", "epochs",
"match"}}; "basis" says which probe was used and how well it matches the cell ("match" 0: the
cell's environment id; 1: same device and numerics flags; 2: same device; 3: another device). A
cell whose model no probe covers gets predicted_s null and says so; predicted_mem_mb is null
also where the probe recorded no memory (a probe of an earlier version). Host side: standard
library only (the host may have no torch; densenet.atomic imports none).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from densenet import atomic  # noqa: E402  (standard library only at import)
from densenet.argcheck import Parser  # noqa: E402

SIZE_KEYS = ("epochs", "n_train", "n_test", "batch_size")


class InputError(Exception):
    """A manifest or probe that cannot be used; one line naming the file."""


def read_json(path: str, what: str) -> dict[str, Any]:
    """The JSON object of `path` (`what`: manifest, cost probe); InputError when the file is
    missing, unreadable, not JSON or not an object."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise InputError("%s: cannot read the %s (%s)" % (path, what, exc.strerror)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError("%s: the %s is not valid JSON (%s)" % (path, what, exc)) from None
    if not isinstance(data, dict):
        raise InputError(
            "%s: expected the %s as a JSON object, found %s" % (path, what, type(data).__name__)
        )
    return data


def read_probe(path: str) -> dict[str, Any]:
    probe = read_json(path, "cost probe")
    if probe.get("kind") != "cost-probe":
        raise InputError("%s is not a cost probe (bench --probe output)" % path)
    return probe


def read_manifest(path: str) -> dict[str, Any]:
    manifest = read_json(path, "manifest")
    cells = manifest.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise InputError("%s: the manifest has no 'cells' list of objects" % path)
    return manifest


def cell_sizes(
    params: Mapping[str, Any], overrides: Mapping[str, Any], probe: Mapping[str, Any]
) -> tuple[int, int, int, int]:
    """(epochs, n_train, n_test, batch) of a cell: its protocol, then the study's `train`
    overrides, then any size in the cell's own params; full sizes capped by the dataset."""
    proto = dict(probe["protocols"][params["protocol"]])
    for source in (overrides, params):
        for key in SIZE_KEYS:
            if source.get(key) is not None:
                proto[key] = source[key]
    full = probe["dataset_sizes"][params["dataset"]]
    n_train = min(proto["n_train"] or full["train"], full["train"])
    n_test = min(proto["n_test"] or full["test"], full["test"])
    return proto["epochs"], n_train, n_test, proto["batch_size"]


def predict_mem_mb(
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    probe: Mapping[str, Any],
    n_train: int,
    n_test: int,
) -> Optional[float]:
    """The cell's host memory peak in MB (module docstring), or None without a measurement."""
    peak, data_mb = model.get("peak_host_mb"), probe.get("host_data_mb")
    images_held = probe.get("host_data_images")
    if not isinstance(peak, (int, float)):
        return None
    if not isinstance(data_mb, (int, float)) or not images_held:
        return float(peak)
    full = probe["dataset_sizes"][params["dataset"]]
    images = n_train + n_test if params["dataset"] == "synthetic" else full["train"] + full["test"]
    return peak + max(0.0, images * data_mb / float(images_held) - data_mb)


def match_rank(cell: Mapping[str, Any], probe: Mapping[str, Any]) -> tuple[int, str]:
    """(rank, words): 0 = the cell's own environment was probed, 1 = same device and numerics
    flags, 2 = same device, 3 = another device."""
    p, env = cell["params"], probe["env"]
    if env.get("env_id") and env["env_id"] == cell.get("env"):
        return 0, "probe of environment %s" % env["env_id"]
    same_device = p.get("device") in (env["device"], "auto")
    flags = [k for k in ("cudnn", "tf32", "deterministic", "canary") if p.get(k) != env.get(k)]
    if same_device and not flags:
        return 1, "probe on %s with the same numerics flags" % env["device"]
    if same_device:
        return 2, "probe on %s with other %s" % (env["device"], ", ".join(flags))
    return 3, "probe on %s, cell on %s" % (env["device"], p.get("device"))


def predict_cell(
    cell: Mapping[str, Any], probes: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """{"predicted_s", "predicted_mem_mb", "basis", "epoch_s", "epochs", "match"} for one
    manifest cell."""
    p = cell["params"]
    usable = [pr for pr in probes if p["model"] in pr["models"]]
    if not usable:
        return {
            "predicted_s": None,
            "predicted_mem_mb": None,
            "epoch_s": None,
            "epochs": None,
            "basis": "no probe covers model %s" % p["model"],
        }
    rank, words, probe = min((match_rank(cell, pr) + (pr,) for pr in usable), key=lambda t: t[0])
    m = probe["models"][p["model"]]
    opt = p.get("optimizer", "sgd")
    notes = []
    if opt not in m["step_ms"]:
        notes.append("step of %s used for %s" % (sorted(m["step_ms"])[0], opt))
        opt = sorted(m["step_ms"])[0]
    epochs, n_train, n_test, batch = cell_sizes(p, overrides, probe)
    step_ms = m["step_ms"][opt] * batch / float(probe["batch_size"])
    if batch != probe["batch_size"]:
        notes.append("step scaled from batch %d to %d" % (probe["batch_size"], batch))
    epoch_ms = (
        math.ceil(n_train / float(batch)) * step_ms
        + n_train * probe["augment_ms_per_img"]
        + n_test * m["eval_ms_per_img"]
        + m["checkpoint_ms"]
    )
    basis = "%s (torch %s, %s step %.4g ms); %d epochs x %d/%d images, batch %d" % (
        words,
        probe["env"]["torch"],
        m["step_mode"][opt],
        m["step_ms"][opt],
        epochs,
        n_train,
        n_test,
        batch,
    )
    if notes:
        basis += "; " + "; ".join(notes)
    return {
        "predicted_s": epochs * epoch_ms / 1000.0,
        "predicted_mem_mb": predict_mem_mb(p, m, probe, n_train, n_test),
        "epoch_s": epoch_ms / 1000.0,
        "epochs": epochs,
        "basis": basis,
        "match": rank,
    }


def predict(
    manifest: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    overrides = (manifest.get("config") or {}).get("train") or {}
    return {c["id"]: predict_cell(c, probes, overrides) for c in manifest["cells"]}


def probe_args(
    cells: Iterable[Mapping[str, Any]], env_id: str, env_params: Mapping[str, Any]
) -> list[str]:
    """`densenet bench --probe` options of one environment (workflow/rules/cost.smk): the
    models and optimizers of its cells, its numerics flags, and its id, so that each cell's
    prediction can name the probe of its own environment."""
    mine = [c for c in cells if c["env"] == env_id]
    args = ["--models", ",".join(sorted({c["params"]["model"] for c in mine}))]
    args += ["--optimizers", ",".join(sorted({c["params"]["optimizer"] for c in mine}))]
    for key in ("cudnn", "tf32", "device", "canary"):
        args += ["--%s" % key, env_params[key]]
    return args + ["--env-id", env_id]


def main(argv: Optional[list[str]] = None) -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("probes", nargs="+", help="cost probe JSON files (bench --probe)")
    args = ap.parse_args(argv)
    try:
        probes = [read_probe(path) for path in args.probes]
        manifest = read_manifest(args.manifest)
    except InputError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    try:
        out = predict(manifest, probes)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # A probe or manifest of another version: say so rather than print a traceback.
        sys.stderr.write(
            "error: %s, %s: unexpected content (%s: %s)\n"
            % (args.manifest, " ".join(args.probes), type(exc).__name__, exc)
        )
        return 2
    atomic.write_json(args.out, out)
    known = [v["predicted_s"] for v in out.values() if v["predicted_s"] is not None]
    total = sum(known)
    print(
        "predicted %d of %d cells: %.0f s (%.2f h) in all"
        % (len(known), len(out), total, total / 3600)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
