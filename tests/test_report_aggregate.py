"""report/ aggregation: cell states, corrupt files, manifests, verdict statistics (fast)."""

import json
import math
import os

import pandas as pd
import pytest
from helpers import report_fixtures as fx
from scipy import stats

from report import aggregate, predicted, readers, references, sections, study
from report.cli import main as report_main


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("agg") / "matrixstudy")
    manifest, states = fx.build_matrix_study(root)
    return manifest, states, aggregate.aggregate(study.from_manifest(manifest))


def test_every_expected_cell_has_its_state(matrix):
    _, states, tables = matrix
    got = dict(zip(tables.runs["cell_id"], tables.runs["status"]))
    want = {cid: state for state, ids in states.items() for cid in ids}
    assert got == want
    assert set(tables.runs["status"]) == set(aggregate.STATUSES)


def test_corrupt_cells_name_the_file_and_give_no_numbers(matrix):
    _, states, tables = matrix
    corrupt = tables.runs[tables.runs["status"] == "corrupt"].set_index("cell_id")
    assert sorted(corrupt["corrupt_file"]) == ["metrics.csv", "summary.json"]
    for _, row in corrupt.iterrows():
        assert row["reason"].startswith(row["corrupt_file"] + ":"), row["reason"]
        assert pd.isna(row["final_test_err"]) and pd.isna(row["last_test_err"])
    assert not set(corrupt.index) & set(tables.curves["cell_id"])


def test_partial_states_keep_what_they_have(matrix):
    _, states, tables = matrix
    runs = tables.runs.set_index("cell_id")
    running = runs.loc[states["running"][0]]
    assert running["epochs_done"] == 120 and pd.isna(running["final_test_err"])
    assert (tables.curves["cell_id"] == states["running"][0]).sum() == 120
    diverged = runs.loc[states["diverged"][0]]
    assert diverged["epochs_done"] == 41 and "non-finite" in diverged["reason"]
    failed = runs.loc[states["failed"][0]]
    assert "out of memory" in failed["reason"] and "137" in failed["reason"]
    skipped = runs.loc[states["skipped"][0]]
    assert "sm_90" in skipped["reason"] and skipped["files"] == "summary.json"
    assert runs.loc[states["missing"][0], "reason"] == "no cell directory"


def test_env_verdicts_reach_the_cells(matrix):
    _, _, tables = matrix
    runs = tables.runs
    canary = runs[runs["canary"] == "noncontig-grad"].iloc[0]
    assert canary["gradcheck_verdict"] == "fail"
    assert set(runs[runs["tf32"] == "on"]["gradcheck_verdict"]) == {"reduced-precision"}
    no_stage = runs[(runs["torch"] == "1.13") & (runs["cudnn"] == "off")]
    assert set(no_stage["gradcheck_verdict"]) == {"gradcheck missing"}
    envs = tables.envs.set_index("env_id")
    assert "canary detected: yes" in envs.loc[fx.env_id(canary), "gradcheck"]
    assert len(tables.layers) == 40 * (tables.envs["status"] == "completed").sum()


def test_extra_cell_dirs_beside_the_manifest_are_reported(tmp_path):
    root = str(tmp_path / "extrastudy")
    fx.write_cell(root, fx.params(seed=0))
    stray = fx.params(seed=9)
    fx.write_cell(root, stray)
    manifest = fx.write_manifest(root, "extra", [fx.params(seed=0)], [])
    runs = aggregate.aggregate(study.from_manifest(manifest)).runs.set_index("cell_id")
    assert not runs.loc[fx.cell_id(stray), "in_manifest"]
    assert runs.loc[fx.cell_id(stray), "status"] == "completed"
    assert runs.loc[fx.cell_id(stray), "seed"] == "9"  # params read from summary.json config


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("epoch,lr\n1,0.1\n", "missing columns"),
        ("%s\n1,0.1,2.3,80,2.2,79,10,100\n2,0.1,2.1\n", "line 3 has 3 fields"),
        ("%s\n1,0.1,2.3,80,2.2,abc,10,100\n", "test_err is 'abc'"),
        ("%s\n2,0.1,2.3,80,2.2,79,10,100\n", "epochs are not 1..1"),
    ],
)
def test_bad_metrics_are_problems(text, problem):
    header = ",".join(readers.METRIC_COLUMNS)
    frame, found = readers.parse_metrics((text.replace("%s", header)).encode())
    assert frame is None and problem in found


def test_metrics_keep_nan_and_inf_of_a_diverged_epoch():
    header = ",".join(readers.METRIC_COLUMNS)
    text = header + "\n1,0.1,2.3,80,2.2,79,10,100\n2,0.1,nan,80,inf,90,10,100\n"
    frame, problem = readers.parse_metrics(text.encode())
    assert problem is None
    assert math.isnan(frame["train_loss"][1]) and math.isinf(frame["test_loss"][1])
    assert list(frame["epoch"]) == [1, 2]


@pytest.mark.parametrize(
    "summary, problem",
    [
        ({"status": "finished"}, "status 'finished'"),
        ({"status": "completed", "final_test_err": "5.2"}, "final_test_err"),
    ],
)
def test_summary_breaking_the_contract_is_corrupt(tmp_path, summary, problem):
    fx.write_json(str(tmp_path / "summary.json"), summary)
    status, reason, name = aggregate.classify(readers.read_dir(str(tmp_path)))
    assert (status, name) == ("corrupt", "summary.json") and problem in reason


def test_summary_and_metrics_must_agree_on_epochs(tmp_path):
    rel = fx.write_cell(str(tmp_path), fx.params(protocol="short"))
    path = tmp_path / rel / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps(dict(summary, epochs_done=31)))
    status, reason, name = aggregate.classify(readers.read_dir(str(tmp_path / rel)))
    assert (status, name) == ("corrupt", "metrics.csv") and "30 rows" in reason


def test_checkpoint_alone_means_running_and_empty_dir_missing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    assert aggregate.classify(readers.read_dir(str(tmp_path / "a")))[0] == "running"
    assert aggregate.classify(readers.read_dir(str(tmp_path / "b")))[:2] == (
        "missing",
        "directory exists but holds no results",
    )


def test_each_file_is_read_once(matrix, monkeypatch):
    manifest = matrix[0]
    opened = []
    real = readers.read_bytes
    monkeypatch.setattr(readers, "read_bytes", lambda p: opened.append(p) or real(p))
    aggregate.aggregate(study.from_manifest(manifest))
    assert opened and len(opened) == len(set(opened))


def test_results_mode_discovers_cells_and_envs(matrix):
    root = os.path.dirname(matrix[0])
    found = study.from_results(root)
    tables = aggregate.aggregate(found)
    assert len(tables.runs) == len(matrix[2].runs) - 1  # all but the missing cell
    assert not tables.runs["in_manifest"].any()
    assert (tables.envs["status"] == "completed").sum() == len(tables.envs)
    canary = tables.runs[tables.runs["canary"] == "noncontig-grad"].iloc[0]
    assert canary["gradcheck_verdict"] == "fail"  # matched to its env by params


def test_unreadable_manifest_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "manifest.json"
    bad.write_text('{"cells": [')
    assert report_main(["--manifest", str(bad), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: manifest") and "\n" not in err
    with pytest.raises(study.ManifestError):
        study.from_manifest(str(tmp_path / "absent.json"))


def test_verdict_uses_the_stated_tests():
    assert references.verdict([5.3], 5.24)["text"] == "1 seed: no verdict"
    assert references.verdict([], 5.24)["class"] == "none"
    assert references.verdict([5.3, 5.3], 5.24)["class"] == "none"  # no spread to test
    close = [5.20, 5.30, 5.25, 5.22]
    result = references.verdict(close, 5.24, tolerance=0.5)
    assert result["class"] == "pass"
    # The published value as one more draw: a pooled two-sample t-test against a sample of one
    # (which adds no variance information) is exactly the prediction-interval test, df n - 1.
    assert result["p_different"] == pytest.approx(stats.ttest_ind(close, [5.24]).pvalue)
    far = [6.9, 7.1, 7.0]
    assert references.verdict(far, 5.24, tolerance=0.5)["class"] == "fail"
    assert references.verdict([5.0, 6.0], 5.24, tolerance=0.5)["class"] == "warn"


def test_only_official_paper_protocol_sgd_is_comparable():
    row = {"dataset_identity": "official", "protocol": "paper", "epochs_planned": 300}
    base = pd.DataFrame([dict(row, optimizer="sgd")])
    assert references.not_comparable(base) is None
    jpeg = base.assign(dataset_identity="cifar10-jpeg75")
    assert "cifar10-jpeg75" in references.not_comparable(jpeg)
    assert "protocol short" in references.not_comparable(base.assign(protocol="short"))
    assert "optimizer adam" in references.not_comparable(base.assign(optimizer="adam"))


def test_model_names_map_to_the_published_table():
    assert references.model_key("densenet-bc100-k12") == ("DenseNet-BC", 100, 12)
    assert references.model_key("densenet40-k12") == ("DenseNet", 40, 12)
    assert references.model_key("vgg16-bn") is None
    table = references.published()
    c10 = references.references_for(table, "densenet40-k12", "cifar10", "off")
    assert 7.00 in set(c10["test_error_pct"]) and len(c10) == 3  # paper + 2 chainer images


def test_predicted_cost_shapes(tmp_path):
    assert predicted.load(str(tmp_path / "none.json"))[0] == {}
    path = tmp_path / "predicted_cost.json"
    # the shape workflow/scripts/predict_cost.py writes: one object per cell id
    made = {"a": {"predicted_s": 7200, "basis": "probe x"}, "b": {"predicted_s": None}}
    path.write_text(json.dumps(made))
    cells, note = predicted.load(str(path))
    assert cells == {"a": {"seconds": 7200.0, "basis": "probe x"}}
    assert "1 cells; 1 without a prediction" in note
    path.write_text(json.dumps({"cells": [{"id": "a", "seconds": 10}]}))
    assert predicted.load(str(path))[0] == {"a": {"seconds": 10.0, "basis": None}}
    path.write_text("{")
    assert "unreadable" in predicted.load(str(path))[1]


def test_cudnn_versions_are_decoded():
    assert sections.cudnn_text(90100) == "9.1.0 (90100)"
    assert sections.cudnn_text("8500") == "8.5.0 (8500)"
    assert sections.cudnn_text(None) is None


def test_cells_outside_the_study_dir_are_not_swept_up(tmp_path, monkeypatch):
    other = str(tmp_path / "cwd")
    fx.write_cell(other, fx.params(seed=5))  # ./cells/<id> of the working directory
    monkeypatch.chdir(other)
    manifest = tmp_path / "study" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"study": "s", "cells": [{"id": "a"}], "envs": [{"id": "e"}]}))
    found = study.from_manifest(str(manifest))
    assert [c["id"] for c in found.cells] == ["a"]
    assert found.cells[0]["path"] == str(tmp_path / "study" / "cells" / "a")
    assert found.envs[0]["path"] == str(tmp_path / "study" / "gradcheck" / "e")
