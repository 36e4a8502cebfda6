"""End to end with real cell directories: `python -m densenet train` writes two tiny cells
(clean and canary) and `python -m report` renders them (slow: two short CPU trainings)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers.report_html import Page

pytestmark = pytest.mark.slow

COMMON = [
    "--model",
    "densenet-bc40-k12",
    "--dataset",
    "synthetic",
    "--n-train",
    "64",
    "--n-test",
    "32",
    "--epochs",
    "2",
    "--device",
    "cpu",
    "--protocol",
    "smoke",
]


def test_report_of_real_cells(tmp_path, run_densenet, repo):
    study = tmp_path / "e2estudy"
    cells = []
    for canary in ("none", "noncontig-grad"):
        cell_id = "bc40-synthetic-%s" % canary
        out = study / "cells" / cell_id
        done = run_densenet("train", "--out", out, "--canary", canary, *COMMON)
        assert done.returncode == 0, done.stderr
        params = {
            "model": "densenet-bc40-k12",
            "dataset": "synthetic",
            "augment": "on",
            "optimizer": "sgd",
            "torch": "local",
            "cudnn": "on",
            "tf32": "off",
            "deterministic": "off",
            "canary": canary,
            "seed": "0",
            "protocol": "smoke",
            "device": "cpu",
        }
        cells.append(
            {
                "id": cell_id,
                "dir": str(out),
                "params": params,
                "env": None,
                "rerun": "python -m densenet train --out %s ..." % out,
            }
        )
    cells.append(
        {
            "id": "never-ran",
            "dir": str(study / "cells" / "never-ran"),
            "params": dict(params, seed="1"),
            "env": None,
            "rerun": None,
        }
    )
    manifest = study / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "study": "e2e",
                "config_hash": "e2e",
                "config": {},
                "dataset_fallback": None,
                "cells": cells,
                "envs": [],
            }
        )
    )
    report = study / "report"
    done = subprocess.run(
        [sys.executable, "-m", "report", "--manifest", str(manifest), "--out", str(report)],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(report / "runs.csv").set_index("cell_id")
    for cell in cells[:2]:
        with open(os.path.join(cell["dir"], "summary.json")) as f:
            summary = json.load(f)
        row = runs.loc[cell["id"]]
        assert row["status"] == summary["status"] == "completed"
        assert row["final_test_err"] == pytest.approx(summary["final_test_err"])
        assert row["dataset_identity"] == "synthetic" and row["torch_version"]
    assert runs.loc["never-ran", "status"] == "missing"
    html = (report / "report.html").read_text()
    page = Page(html)
    assert any("Synthetic" in b["text"] for b in page.banners)
    canary = html.split('<section id="canary">')[1].split("</section>")[0]
    assert "bc40-synthetic-noncontig-grad" in canary and "bc40-synthetic-none" in canary
    assert "data:image/png" in canary
