"""The smoke recipes study (config/studies/recipes-smoke.yaml) end to end through Snakemake in a
copy of the checkout: every recipe's cells train and record their recipe, and the report pairs
bamos and chainer with lua in its recipe-delta tables and writes comparisons.csv."""

import csv
import os
import time

import pytest
from conftest import TINY_MODEL, read_json
from helpers.pipeline_helpers import checkout, snakemake

pytestmark = pytest.mark.slow

# Tinier than the file (it checks plumbing): one thread, so jobs do not fight over the cores.
TINY = 'train={"epochs": 1, "n_train": 200, "n_test": 100, "threads": 1}'
TINY_GRADCHECK = 'gradcheck={"batch_size": 2, "steps": 1}'
# The recipes, not the model, are under test: the tests' one-layer-per-block DenseNet-BC.
TINY_AXES = 'axes={"model": ["%s"]}' % TINY_MODEL


def test_recipes_smoke_study_end_to_end(tmp_path):
    work = checkout(tmp_path / "repo")
    start = time.perf_counter()
    res = snakemake(
        work,
        "--cores",
        "2",
        "--configfile",
        "config/studies/recipes-smoke.yaml",
        "--config",
        TINY,
        TINY_GRADCHECK,
        TINY_AXES,
    )
    print("recipes-smoke study (tiny cells): %.0f s" % (time.perf_counter() - start))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    root = os.path.join(work, "results", "recipes-smoke")
    manifest = read_json(os.path.join(root, "manifest.json"))
    recipes = sorted((c["params"]["recipe"], c["params"]["seed"]) for c in manifest["cells"])
    assert recipes == [(r, s) for r in ("bamos", "chainer", "lua") for s in (0, 1)]
    for cell in manifest["cells"]:
        name = cell["params"]["recipe"]
        assert ("recipe-" in cell["id"]) == (name != "lua"), cell["id"]
        summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
        assert summary["status"] == "completed", cell["id"]
        config = read_json(os.path.join(work, cell["dir"], "env.json"))["config"]
        assert config["recipe"] == summary["config"]["recipe"] == name
        assert config["lr_schedule"] == ("chainer" if name == "chainer" else "lua")
    with open(os.path.join(root, "report", "report.html")) as f:
        html = f.read()
    for other in ("bamos", "chainer"):
        assert 'data-recipes="%s-lua"' % other in html
    with open(os.path.join(root, "report", "comparisons.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["recipe"] for r in rows} == {"lua", "bamos", "chainer"}
