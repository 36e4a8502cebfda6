"""FIXTURES for the report tests: fake but well-formed cell directories, gradcheck dirs and
study manifests, in the formats of DESIGN.md and docs/contracts.md.

Every number written here is invented for tests (smooth curves with seeded noise); nothing
here is a measurement. Hosts, SHAs and digests say "fixture" so they cannot be mistaken.
"""

import json
import math
import os

import numpy as np

from densenet.celldir import METRIC_COLUMNS  # the writer's columns, in its order

FIXTURE_SHA = "f1x7" + "0" * 36
GPU = {
    "name": "FIXTURE GPU H100",
    "capability": "9.0",
    "count": 1,
    "memory_mb": 81559,
    "driver": "fixture-550.00",
}
TORCH_VERSIONS = {"2.4": ("2.4.1+cu124", "12.4", 90100), "1.13": ("1.13.1+cu117", "11.7", 8500)}


def params(
    model="densenet40-k12",
    dataset="cifar10",
    augment="off",
    optimizer="sgd",
    torch="2.4",
    cudnn="on",
    tf32="off",
    deterministic="off",
    canary="none",
    seed=0,
    protocol="paper",
    device="cuda",
):
    return {
        "model": model,
        "dataset": dataset,
        "augment": augment,
        "optimizer": optimizer,
        "torch": torch,
        "cudnn": cudnn,
        "tf32": tf32,
        "deterministic": deterministic,
        "canary": canary,
        "seed": str(seed),
        "protocol": protocol,
        "device": device,
    }


def cell_id(p):
    """The cell's id; a `recipe` param (a study axis) is part of it where given."""
    return (
        "{model}_{dataset}_aug{augment}_{optimizer}_t{torch}_cudnn{cudnn}_tf32{tf32}_"
        "det{deterministic}_{canary}_s{seed}".format(**p)
    ) + ("_r%s" % p["recipe"] if p.get("recipe") else "")


def env_id(p):
    return "t{torch}_{device}_cudnn{cudnn}_tf32{tf32}_{canary}".format(**p)


def curve(epochs, final_err, seed, broken=False, classes=10, diverge_at=None):
    """Per-epoch rows of a plausible run: error decays to final_err with drops at 50%/75%;
    broken (the canary) sits at chance; diverge_at: losses become NaN from that epoch."""
    rng = np.random.RandomState(1000 + int(seed))
    rows = []
    chance_err, chance_loss = 100.0 * (1 - 1.0 / classes), math.log(classes)
    for e in range(1, epochs + 1):
        stage = 0 if e <= epochs // 2 else (1 if e <= epochs * 3 // 4 else 2)
        lr = 0.1 * 0.1**stage
        level = [2.6, 1.2, 1.0][stage] * final_err
        test_err = level + (45.0 - level) * math.exp(-e / (epochs / 30.0 + 1))
        test_err += rng.normal(0, 0.4 if stage == 0 else 0.05)
        if stage == 2:
            test_err = final_err + rng.normal(0, 0.03) if e == epochs else test_err
        train_loss = 0.02 + 1.4 * math.exp(-e / (epochs / 20.0 + 1)) * (0.3 if stage else 1)
        if broken:
            test_err, train_loss = (
                chance_err + rng.normal(0, 0.5),
                chance_loss + rng.normal(0, 0.01),
            )
        row = {
            "epoch": e,
            "lr": lr,
            "train_loss": train_loss,
            "train_err": max(0.0, test_err - 4.0),
            "test_loss": train_loss * 1.3,
            "test_err": test_err,
            "epoch_s": 18.0 + rng.normal(0, 0.2),
            "img_per_s": 50000 / 18.0,
        }
        if diverge_at and e >= diverge_at:
            row.update(train_loss=float("nan"), test_loss=float("nan"), test_err=90.0)
            rows.append(row)
            break
        rows.append(row)
    return rows


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def write_metrics(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(",".join(METRIC_COLUMNS) + "\n")
        for row in rows:
            f.write(
                ",".join(
                    repr(float(row[c])) if c != "epoch" else str(row[c]) for c in METRIC_COLUMNS
                )
                + "\n"
            )


# densenet/recipe.py resolve(): (n_train, n_test) per protocol (None = the full set) and the
# resolved recipe it records in summary.json / env.json config.
SETS = {"paper": (None, None), "short": (None, None), "smoke": (5000, 1000)}
LR = {"sgd": 0.1, "adam": 1e-3, "rmsprop": 1e-4}


def resolved_config(p, epochs=None, **overrides):
    """The config a cell of params p records, as densenet/recipe.py resolves it."""
    n_train, n_test = SETS.get(p["protocol"], (None, None))
    config = dict(
        p,
        epochs=epochs or EPOCHS.get(p["protocol"], 30),
        seed=int(p["seed"]),
        n_train=n_train,
        n_test=n_test,
        batch_size=64,
        lr=LR.get(p["optimizer"], 0.1),
        dropout=0.0 if p["augment"] == "on" else 0.2,
        augment_order="official",
        bias="off",
        stem="paper",
    )
    config.update(overrides)
    return config


# The resolved values each named recipe records in config (docs/contracts.md, "Report"),
# written out here by hand so that the report's own table (report/references.py RECIPES) is
# checked against them. lua's dropout follows the augmentation, as resolved_config sets it.
RECIPE_VALUES = {
    "lua": dict(
        momentum=0.9,
        nesterov="on",
        lr_schedule="lua",
        weight_decay=1e-4,
        norm="lua",
        augment_order="official",
        init="lua",
        bias="off",
        stem="lua",
    ),
    "bamos": dict(
        momentum=0.9,
        nesterov="off",
        lr_schedule="lua",
        weight_decay=1e-4,
        norm="bamos",
        augment_order="bamos",
        init="lua",
        bias="off",
        stem="lua",
        dropout=0.0,
    ),
    "chainer": dict(
        momentum=0.9,
        nesterov="on",
        lr_schedule="chainer",
        weight_decay=1e-4,
        norm="lua",
        augment_order="official",
        init="chainer",
        bias="on",
        stem="paper",
        dropout=0.2,
    ),
}


def recipe_config(name, **overrides):
    """The config keys a cell of recipe `name` records, with overrides on top."""
    return dict(RECIPE_VALUES.get(name, {}), recipe=name, **overrides)


def env_json(p, identity="official", config=None):
    version, cuda, cudnn = TORCH_VERSIONS.get(p["torch"], (p["torch"], None, None))
    on_gpu = p["device"] != "cpu"
    applicability = (
        {} if on_gpu else {"cudnn": "not applicable on cpu", "tf32": "not applicable on cpu"}
    )
    return {
        "environ": {
            "torch": version,
            "cuda": cuda,
            "cudnn": cudnn,
            "python": "3.11.7",
            "gpu": GPU if on_gpu else None,
            "host": "fixture-host",
            "image": {
                "ref": "fixture/torch:%s@sha256:%s" % (p["torch"], "ab" * 32),
                "tag": "fixture/torch:%s" % p["torch"],
                "digest": "sha256:" + "ab" * 32,
            },
            "git_sha": FIXTURE_SHA,
        },
        "flags": {
            "cudnn_enabled": p["cudnn"] == "on",
            "cudnn_benchmark": False,
            "cudnn_deterministic": p["deterministic"] == "on",
            "tf32_effective": p["tf32"] == "on" and on_gpu,
            "deterministic_algorithms": p["deterministic"] == "on",
            "seed": int(p["seed"]),
            "applicability": applicability,
        },
        "dataset": {
            "name": p["dataset"],
            "identity": identity,
            "checksums": {"data_batch_1": {"md5": "c99cafc152244af753f735de768cd75f"}},
        },
        "config": config or resolved_config(p),
    }


EPOCHS = {"paper": 300, "short": 30, "smoke": 3}


def write_cell(
    root,
    p,
    status="completed",
    final_err=7.0,
    identity="official",
    epochs=None,
    reason=None,
    diverge_at=None,
    running_epochs=None,
    config=None,
    exact=False,
):
    """A cell directory in the given state; returns its path relative to root. config:
    keys of the recorded config to override (e.g. {"batch_size": 256}); exact: the last
    epoch's test error is final_err itself (no noise), for verdicts computed by hand."""
    rel = os.path.join("cells", cell_id(p))
    path = os.path.join(root, rel)
    os.makedirs(path, exist_ok=True)
    epochs = epochs or EPOCHS.get(p["protocol"], 30)
    classes = 100 if p["dataset"] == "cifar100" else 10
    config = resolved_config(p, epochs, **(config or {}))
    if status == "skipped":
        write_json(os.path.join(path, "summary.json"), _summary("skipped", [], config, reason))
        return rel
    if status == "failed":
        write_json(os.path.join(path, "env.json"), env_json(p, identity, config))
        write_json(
            os.path.join(path, "failure.json"),
            {
                "status": "failed",
                "reason": reason or "CUDA out of memory",
                "exit_code": 137,
                "log_tail": "fixture log tail",
                "runner": "docker",
            },
        )
        return rel
    rows = curve(
        epochs,
        final_err,
        p["seed"],
        broken=p["canary"] != "none",
        classes=classes,
        diverge_at=diverge_at,
    )[:running_epochs]
    if exact and rows:
        rows[-1]["test_err"] = float(final_err)
    write_json(os.path.join(path, "env.json"), env_json(p, identity, config))
    write_metrics(os.path.join(path, "metrics.csv"), rows)
    if status == "running":
        with open(os.path.join(path, "checkpoint.pt"), "wb") as f:
            f.write(b"fixture checkpoint")
        return rel
    summary = _summary(status, rows, config, reason, identity)
    write_json(os.path.join(path, "summary.json"), summary)
    return rel


def _summary(status, rows, config, reason=None, identity="official"):
    errs = [r["test_err"] for r in rows if r["test_err"] == r["test_err"]]
    on_gpu = config["device"] != "cpu"
    return {
        "status": status,
        "reason": reason,
        "final_test_err": rows[-1]["test_err"] if rows else None,
        "best_test_err": min(errs) if errs else None,
        "epochs_done": len(rows),
        "wall_s": sum(r["epoch_s"] for r in rows) * 1.05,
        "peak_mem_mb": (5200.0 if on_gpu else 1800.0) if rows else None,
        "img_per_s": rows[len(rows) // 2]["img_per_s"] if rows else None,
        "config": config,
        "step_mode": "cuda-graph" if on_gpu else "eager",
        "dataset_identity": identity if rows else None,
    }


def write_gradcheck(root, p, verdict, max_rel_err):
    """A gradcheck dir for env p, shaped like densenet/gradcheck/stage.py's record; returns its path
    relative to root."""
    rel = os.path.join("gradcheck", env_id(p))
    names = ["stem"] + ["features.%d.conv1" % i for i in range(38)] + ["classifier"]
    layers = [
        {
            "name": name,
            "kind": "linear" if name == "classifier" else "conv",
            "rel_err_weight": max_rel_err * (0.2 + 0.8 * i / 39.0),
            "rel_err_input": max_rel_err * 0.5 * (1 + i % 3) / 3,
        }
        for i, name in enumerate(names)
    ]
    canary = p["canary"] != "none"
    cases = [
        {
            "conv": conv,
            "layout": layout,
            "configured": (conv == "canary") == canary,
            "passed": not (conv == "canary" and layout != "contiguous"),
            "as_expected": True,
            "error": None,
        }
        for conv in ("clean", "canary")
        for layout in ("contiguous", "channel-slice", "cat")
    ]
    write_json(
        os.path.join(root, rel, "gradcheck.json"),
        {
            "verdict": verdict,
            "max_rel_err": max_rel_err,
            "median_rel_err": max_rel_err / 3,
            "reasons": ["max rel err %.3g > 0.0001 (float32)" % max_rel_err]
            if verdict == "fail"
            else [],
            "precision": "tf32" if p["tf32"] == "on" else "float32",
            "worst_layer": names[-2],
            "layers": layers,
            "gradcheck": {
                "cases": cases,
                "all_as_expected": True,
                "canary_detected": True,
                "configured_passed": not canary,
            },
            "determinism": {
                "steps": 3,
                "bitwise_equal": verdict == "pass",
                "max_abs_diff": 0.0 if verdict == "pass" else 3.1e-7,
            },
            "config": dict(
                {k: p[k] for k in ("device", "cudnn", "tf32", "canary")}, model="densenet-bc40-k12"
            ),
            "environ": env_json(p)["environ"],
        },
    )
    return rel


def write_manifest(root, study, cells, envs, dataset_fallback=None):
    """manifest.json with dirs relative to root's parent (as the workflow writes them
    relative to the repository root); returns its path."""
    prefix = os.path.basename(os.path.abspath(root))
    manifest = {
        "study": study,
        "config_hash": "fixture" + "0" * 57,
        "config": {"study": study},
        "dataset_fallback": dataset_fallback,
        "cells": [
            {
                "id": cell_id(p),
                "dir": os.path.join(prefix, "cells", cell_id(p)),
                "params": p,
                "env": env_id(p),
                "rerun": "snakemake --cores all %s/cells/%s/summary.json -f" % (prefix, cell_id(p)),
            }
            for p in cells
        ],
        "envs": [
            {
                "id": env_id(p),
                "dir": os.path.join(prefix, "gradcheck", env_id(p)),
                "params": {k: p[k] for k in ("torch", "device", "cudnn", "tf32", "canary")},
            }
            for p in envs
        ],
    }
    path = os.path.join(root, "manifest.json")
    write_json(path, manifest)
    return path


# Invented "true" final errors per (model, torch) for the fixtures (not measurements).
FIXTURE_ERR = {
    ("densenet40-k12", "2.4"): 7.05,
    ("densenet40-k12", "1.13"): 7.20,
    ("densenet-bc100-k12", "2.4"): 4.95,
    ("densenet-bc100-k12", "1.13"): 4.60,
}
SEED_JITTER = [0.0, 0.14, -0.12]


def build_matrix_study(root):
    """Two models x two torch versions x cuDNN on/off x 3 seeds (paper protocol, official
    data), plus TF32 on for one env, a canary cell, and every non-completed state.
    Returns (manifest path, {state: [cell ids]})."""
    cells, envs, states = [], {}, {}

    def add(p, state="completed", **kw):
        kw.setdefault(
            "final_err",
            FIXTURE_ERR[(p["model"], p["torch"])]
            + SEED_JITTER[int(p["seed"]) % 3]
            + (0.05 if p["cudnn"] == "off" else 0),
        )
        cells.append(p)
        envs[env_id(p)] = p
        states.setdefault(state, []).append(cell_id(p))
        if state != "missing":
            write_cell(root, p, status=state, **kw)

    for model, augment in (("densenet40-k12", "off"), ("densenet-bc100-k12", "on")):
        for torch in ("2.4", "1.13"):
            for cudnn in ("on", "off"):
                for seed in range(3):
                    p = params(model=model, augment=augment, torch=torch, cudnn=cudnn, seed=seed)
                    key = (model, torch, cudnn, seed)
                    if key[:3] == ("densenet-bc100-k12", "1.13", "off"):
                        add(
                            p,
                            "skipped",
                            reason="torch 1.13.1+cu117 has kernels for sm_37, "
                            "sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, not "
                            "for this GPU (sm_90)",
                        )
                    elif key == ("densenet40-k12", "2.4", "off", 2):
                        add(
                            p,
                            "diverged",
                            diverge_at=41,
                            reason="non-finite loss in epoch 41 (train nan, test nan)",
                        )
                    elif key == ("densenet-bc100-k12", "2.4", "off", 1):
                        add(p, "failed", reason="container killed: out of memory")
                    elif key == ("densenet-bc100-k12", "1.13", "on", 2):
                        add(p, "running", running_epochs=120)
                    elif key == ("densenet40-k12", "1.13", "off", 1):
                        add(p, "missing")
                    else:
                        add(p)
    for seed in range(2):
        add(
            params(model="densenet-bc100-k12", augment="on", tf32="on", seed=seed),
            final_err=5.02 + 0.1 * seed,
        )
    add(params(canary="noncontig-grad"), final_err=90.0)
    # Corrupt files: a truncated summary.json, and a metrics.csv cut mid-line.
    corrupt = params(model="densenet40-k12", torch="1.13", cudnn="on", seed=2)
    path = os.path.join(root, "cells", cell_id(corrupt), "summary.json")
    with open(path, "r+") as f:
        f.truncate(len(f.read()) // 2)
    corrupt2 = params(model="densenet40-k12", torch="1.13", cudnn="off", seed=2)
    path = os.path.join(root, "cells", cell_id(corrupt2), "metrics.csv")
    with open(path, "r+") as f:
        f.truncate(len(f.read()) - 20)
    for cid in (cell_id(corrupt), cell_id(corrupt2)):
        states["completed"].remove(cid)
        states.setdefault("corrupt", []).append(cid)
    verdicts = {}
    for eid, p in envs.items():
        if p["canary"] != "none":
            verdicts[eid] = ("fail", 83.0)
        elif p["tf32"] == "on":
            verdicts[eid] = ("reduced-precision", 0.071)
        elif p["torch"] == "1.13" and p["cudnn"] == "off":
            continue  # no gradcheck.json: the env's stage has not run
        else:
            # distinct per env, so each env's line in the layer-error figure can be seen
            err = 2.1e-6 if p["cudnn"] == "on" else 1.4e-6
            verdicts[eid] = ("pass", err * (1.8 if p["torch"] == "1.13" else 1.0))
    for eid, (verdict, err) in verdicts.items():
        write_gradcheck(root, envs[eid], verdict, err)
    return write_manifest(root, "matrix", cells, list(envs.values())), states


def build_large_study(root, n_models=5, seeds=5, epochs=300):
    """n_models x 2 torch x 2 cuDNN x seeds completed cells (100 by default), epochs each."""
    models = [
        "densenet40-k12",
        "densenet100-k12",
        "densenet100-k24",
        "densenet-bc100-k12",
        "densenet-bc250-k24",
        "densenet-bc190-k40",
    ][:n_models]
    cells, envs = [], {}
    for i, model in enumerate(models):
        for torch in ("2.4", "1.13"):
            for cudnn in ("on", "off"):
                for seed in range(seeds):
                    p = params(model=model, augment="on", torch=torch, cudnn=cudnn, seed=seed)
                    write_cell(root, p, final_err=4.0 + 0.5 * i + 0.1 * (seed % 3), epochs=epochs)
                    cells.append(p)
                    envs[env_id(p)] = p
    for p in envs.values():
        write_gradcheck(root, p, "pass", 3e-6)
    return write_manifest(root, "large", cells, list(envs.values()))


def build_smoke_study(root):
    """The smoke study's shape: CPU, protocol smoke, the offline jpeg75 rebuild of CIFAR-10,
    one clean and one canary cell, their two gradcheck envs."""
    clean = params(
        model="densenet-bc40-k12", augment="on", torch="local", device="cpu", protocol="smoke"
    )
    bug = dict(clean, canary="noncontig-grad")
    write_cell(root, clean, final_err=62.0, identity="cifar10-jpeg75")
    write_cell(root, bug, final_err=90.0, identity="cifar10-jpeg75")
    write_gradcheck(root, clean, "pass", 1.2e-6)
    write_gradcheck(root, bug, "fail", 79.5)
    return write_manifest(root, "smoke", [clean, bug], [clean, bug])
