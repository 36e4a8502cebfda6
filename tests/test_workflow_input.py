"""Bad input at the workflow's and the report's entry points: one line naming the thing and
what was expected, nothing half-written, and a malformed cell file makes its cell `corrupt`
instead of taking the report down."""

import csv
import json
import os
import subprocess
import sys

import pipeline_helpers
import pytest
import report_fixtures as fx
import yaml
from conftest import REPO

from report import aggregate, readers, study
from report.cli import main as report_main

SCRIPTS = os.path.join(REPO, "workflow", "scripts")
sys.path.insert(0, SCRIPTS)

import commands  # noqa: E402
import data_plan  # noqa: E402
import image_lock  # noqa: E402
import predict_cost  # noqa: E402
import run_cell  # noqa: E402
import study as workflow_study  # noqa: E402

OFFLINE = dict(os.environ, DENSENET_NETWORK="no")  # no network probe in the dry runs


def one_line(text):
    """The single line of an error output (asserts there is exactly one)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def usage_error(capsys, argv):
    """Run `python -m report ARGV` in process, expecting a parser error; its one line."""
    with pytest.raises(SystemExit) as info:
        report_main(argv)
    assert info.value.code == 2
    return one_line(capsys.readouterr().err)


def script(name, *args, cwd=REPO):
    return subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, name)] + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dry_run(*config):
    """`snakemake -n --config ...` in the checkout; (returncode, stderr)."""
    res = subprocess.run(
        pipeline_helpers.snakemake_argv("-n", "--config", *config),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=OFFLINE,
    )
    return res.returncode, res.stdout + res.stderr


def config_error(output):
    """The one `config error:` line of a refused dry run, with no traceback around it."""
    errors = [line for line in output.splitlines() if line.startswith("config error")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


# --- python -m report: arguments -----------------------------------------------------------------


@pytest.fixture
def results(tmp_path):
    """A results folder with one completed cell."""
    root = tmp_path / "results"
    fx.write_cell(str(root), fx.params())
    return root


def test_report_out_that_is_a_file_is_refused_before_any_work(
    tmp_path, results, capsys, monkeypatch
):
    monkeypatch.setattr(aggregate, "aggregate", lambda s: pytest.fail("work began"))
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    line = usage_error(capsys, ["--results", str(results), "--out", str(afile)])
    assert "--out" in line and "is a file, expected a directory" in line
    line = usage_error(capsys, ["--results", str(results), "--out", str(afile / "sub")])
    assert "--out" in line and "lies under the file %s" % afile in line
    line = usage_error(capsys, ["--results", str(results), "--out", ""])
    assert "--out" in line and "non-empty" in line
    assert afile.read_text() == "keep me"


def test_report_results_that_do_not_exist_are_an_error(tmp_path, capsys):
    out = tmp_path / "o9"
    line = usage_error(capsys, ["--results", str(tmp_path / "nonexist"), "--out", str(out)])
    assert "--results" in line and "does not exist" in line and "folder" in line
    assert not out.exists()
    with pytest.raises(study.StudyError, match="does not exist"):
        study.from_results(str(tmp_path / "nonexist"))


def test_report_results_without_any_cell_are_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o"
    assert report_main(["--results", str(tmp_path / "empty"), "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: --results") and "no cell or gradcheck directories" in line
    assert not out.exists()


def test_an_explicit_predicted_file_must_exist(tmp_path, results, capsys):
    argv = ["--results", str(results), "--out", str(tmp_path / "o")]
    line = usage_error(capsys, argv + ["--predicted", str(tmp_path / "nonexist.json")])
    assert "--predicted" in line and "does not exist" in line
    assert not (tmp_path / "o").exists()


# --- python -m report: malformed input never crashes it ------------------------------------------


def test_a_manifest_that_is_a_directory_is_one_line(tmp_path, capsys):
    assert report_main(["--manifest", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: manifest") and "is a directory" in line


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda m: m["cells"][0].update(dir=5), "cells[0].dir is 5, expected a string"),
        (lambda m: m["cells"][0].update(params=["a"]), 'cells[0].params is ["a"]'),
        (lambda m: m["cells"].append(5), "cells[1] is 5, expected an object"),
        (lambda m: m["envs"][0].update(id={"a": 1}), "envs[0].id"),
        (lambda m: m.update(envs="x"), 'envs is "x", expected a list'),
        (lambda m: m.update(config=[1]), "config is [1], expected an object"),
    ],
)
def test_wrong_typed_manifest_entries_are_one_line(tmp_path, capsys, edit, where):
    root = str(tmp_path / "s")
    fx.write_cell(root, fx.params())
    path = fx.write_manifest(root, "s", [fx.params()], [fx.params()])
    manifest = json.load(open(path))
    edit(manifest)
    fx.write_json(path, manifest)
    assert report_main(["--manifest", path, "--out", str(tmp_path / "o")]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: manifest %s: " % path) and where in line


def break_file(cell, name, content):
    """Replace a cell file by JSON content, or by a directory (content None)."""
    path = os.path.join(cell, name)
    os.remove(path)
    if content is None:
        os.mkdir(path)
    else:
        fx.write_json(path, content)


def summary_of(cell):
    return json.load(open(os.path.join(cell, "summary.json")))


def env_of(cell):
    return json.load(open(os.path.join(cell, "env.json")))


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("summary.json", lambda c: dict(summary_of(c), config="x"), 'config is "x"'),
        ("summary.json", lambda c: dict(summary_of(c), conv_kernels={"kernels": "ab"}), "kernels"),
        ("summary.json", lambda c: dict(summary_of(c), step_mode=5), "step_mode is 5"),
        ("summary.json", lambda c: None, "summary.json: cannot be read"),
        ("env.json", lambda c: dict(env_of(c), environ=[1]), "environ is [1], expected an obj"),
        ("env.json", lambda c: dict(env_of(c), config=[1]), "env.json: config is [1]"),
        ("env.json", lambda c: None, "env.json: cannot be read"),
        ("metrics.csv", lambda c: None, "metrics.csv: cannot be read"),
    ],
)
def test_wrong_shaped_cell_files_make_the_cell_corrupt(tmp_path, name, make, problem):
    root = str(tmp_path)
    cell = os.path.join(root, fx.write_cell(root, fx.params()))
    break_file(cell, name, make(cell))
    runs = aggregate.aggregate(study.from_results(root)).runs
    assert runs["status"].tolist() == ["corrupt"]
    assert runs["corrupt_file"].tolist() == [name] and problem in runs["reason"][0]


def test_nested_wrong_types_name_their_key():
    env = {"environ": {"gpu": 5}, "flags": {"applicability": ["cpu"]}}
    assert readers.check_json(env, "env.json") == "env.json: environ.gpu is 5, expected an object"
    env = {"flags": {"applicability": ["cpu"]}}
    assert "flags.applicability" in readers.check_json(env, "env.json")
    assert "layers" in readers.check_json({"layers": 5}, "gradcheck.json")
    assert "layers[0]" in readers.check_json({"layers": [5]}, "gradcheck.json")
    assert "exit_code" in readers.check_json({"exit_code": "1"}, "failure.json")
    # true/false is no number, null is always allowed
    assert "epochs_done" in readers.check_summary({"status": "completed", "epochs_done": True})
    assert readers.check_summary({"status": "failed", "config": None, "reason": None}) is None


def test_the_report_renders_beside_broken_cells_and_envs(tmp_path, capsys):
    """One render, every kind of damage at once: each broken cell is corrupt, named in
    runs.csv; nothing crashes."""
    root = str(tmp_path / "s")
    cells = [fx.params(seed=s) for s in range(4)]
    paths = [os.path.join(root, fx.write_cell(root, p)) for p in cells]
    gradcheck = os.path.join(root, fx.write_gradcheck(root, cells[0], "pass", 1e-6))
    break_file(paths[0], "summary.json", dict(summary_of(paths[0]), config="x"))
    break_file(paths[1], "env.json", dict(env_of(paths[1]), environ={"gpu": 5}))
    break_file(paths[2], "summary.json", None)
    grad = json.load(open(os.path.join(gradcheck, "gradcheck.json")))
    break_file(gradcheck, "gradcheck.json", dict(grad, layers=5, environ=[1]))
    manifest = fx.write_manifest(root, "s", cells, cells[:1])
    out = str(tmp_path / "report")
    assert report_main(["--manifest", manifest, "--out", out]) == 0, capsys.readouterr().err
    with open(os.path.join(out, "runs.csv")) as f:
        runs = {row["cell_id"]: row for row in csv.DictReader(f)}
    status = {fx.cell_id(p): runs[fx.cell_id(p)]["status"] for p in cells}
    assert list(status.values()) == ["corrupt", "corrupt", "corrupt", "completed"]
    assert "summary.json: config is" in runs[fx.cell_id(cells[0])]["reason"]
    assert "env.json: environ.gpu is 5" in runs[fx.cell_id(cells[1])]["reason"]
    with open(os.path.join(out, "envs.csv")) as f:
        envs = list(csv.DictReader(f))
    assert envs[0]["status"] == "corrupt" and "gradcheck.json" in envs[0]["reason"]


# --- run_cell.py ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, problem",
    [("afile", "is a file, expected a directory"), ("afile/sub", "lies under the file")],
)
def test_run_cell_refuses_a_cell_dir_that_is_a_file(tmp_path, where, problem):
    (tmp_path / "afile").write_text("keep me")
    args = ["--runner", "local", "--torch", "local", "--gpu", "none"]
    res = script("run_cell.py", *args, "--cell-dir", tmp_path / where, "--", "train")
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "--cell-dir" in line and problem in line and "expected a" in line
    assert (tmp_path / "afile").read_text() == "keep me"


def test_run_cell_that_cannot_clear_a_stale_result_is_one_line(tmp_path):
    (tmp_path / "cell" / "summary.json").mkdir(parents=True)
    args = ["--runner", "local", "--torch", "local", "--gpu", "none"]
    res = script("run_cell.py", *args, "--cell-dir", tmp_path / "cell", "--", "train")
    assert res.returncode == 1
    line = one_line(res.stderr)
    assert line.startswith("run_cell: error: --cell-dir: ") and "summary.json" in line
    assert not (tmp_path / "cell" / "failure.json").exists()


def test_run_cell_takes_the_childs_error_line_as_the_reason(tmp_path):
    cell = tmp_path / "cell"
    args = ["--runner", "local", "--torch", "local", "--gpu", "none", "--cell-dir", cell]
    res = script("run_cell.py", *args, "--", "train", "--model", "nope")
    assert res.returncode == 2, res.stdout + res.stderr
    failure = json.load(open(cell / "failure.json"))
    assert failure["reason"].startswith("argument --model: invalid choice: 'nope'")
    # Without an error line, the generic reason stays.
    assert run_cell.child_error(["epoch 1/2", "run_cell: error: x"]) is None
    assert run_cell.child_error(["error: boom", "done"]) == "boom"


# --- predict_cost.py and prepare_data.py ---------------------------------------------------------


@pytest.mark.parametrize(
    "probe, manifest, fragment",
    [
        (None, {"cells": []}, "cannot read the cost probe"),
        ('{"kind": "cost-probe", ', {"cells": []}, "the cost probe is not valid JSON"),
        ("[1, 2]", {"cells": []}, "expected the cost probe as a JSON object, found list"),
        ('{"kind": "cost-probe"}', '{"cells": [', "the manifest is not valid JSON"),
        ('{"kind": "cost-probe"}', {"cells": 5}, "no 'cells' list"),
    ],
)
def test_predict_cost_names_the_unusable_file(tmp_path, capsys, probe, manifest, fragment):
    probe_path, manifest_path = tmp_path / "probe.json", tmp_path / "manifest.json"
    if probe is not None:
        probe_path.write_text(probe)
    manifest_path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    out = tmp_path / "predicted.json"
    argv = ["--manifest", str(manifest_path), "--out", str(out), str(probe_path)]
    assert predict_cost.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    named = probe_path if "probe" in fragment else manifest_path
    assert line.startswith("error: %s" % named) and fragment in line
    assert not out.exists()


@pytest.mark.parametrize(
    "builder, fragment",
    [(None, "required with --action build"), ("nonexist.py", "does not exist")],
)
def test_prepare_data_build_needs_a_builder(tmp_path, builder, fragment):
    args = ["--dataset", "cifar10", "--data-dir", tmp_path / "D", "--action", "build"]
    args += ["--out", tmp_path / "R.json"]
    if builder:
        args += ["--builder", tmp_path / builder]
    res = script("prepare_data.py", *args)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "--builder" in line and fragment in line
    assert not (tmp_path / "D").exists() and not (tmp_path / "R.json").exists()


# --- the data config -----------------------------------------------------------------------------


@pytest.fixture
def data_cfg(tmp_path):
    default = yaml.safe_load(open(os.path.join(REPO, "config", "config.yaml")))
    return dict(default["data"], dir=str(tmp_path / "data"), builder=str(tmp_path / "build.py"))


def offline():
    return False


def test_a_missing_builder_is_named_when_it_would_be_used(data_cfg):
    # fallback none: a builder that is not there is a config error, before anything runs.
    strict = dict(data_cfg, fallback="none")
    with pytest.raises(workflow_study.ConfigError) as info:
        data_plan.plan(strict, ["cifar10"], network=offline)
    assert str(info.value) == (
        "config error: data.builder: %s does not exist (set the builder script's path, or "
        "null)" % data_cfg["builder"]
    )
    # fallback synthetic (the default study in a checkout without ../shared): it falls back,
    # and the sentence the manifest and the report show names the builder.
    actions, effective, fallback = data_plan.plan(data_cfg, ["cifar10"], network=offline)
    assert (actions, effective) == ({}, {"cifar10": "synthetic"})
    assert "(data.builder: %s does not exist)" % data_cfg["builder"] in fallback
    # Not used, not checked: the network answers, or the study has no CIFAR-10.
    assert data_plan.plan(strict, ["cifar10"], network=lambda: True)[0] == {"cifar10": "download"}
    assert data_plan.plan(strict, ["synthetic"], network=offline)[0] == {}
    os.mkdir(data_cfg["builder"])
    with pytest.raises(workflow_study.ConfigError, match="data.builder: .* is not a file"):
        data_plan.plan(strict, ["cifar10"], network=offline)


def test_data_dir_naming_the_cifar_folder_itself_is_a_config_error(data_cfg, tmp_path):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    named = dict(data_cfg, dir=str(folder))
    with pytest.raises(workflow_study.ConfigError) as info:
        data_plan.plan(named, ["cifar10"], network=offline)
    assert "config error: data.dir: %s is a dataset folder itself" % folder in str(info.value)
    assert "set it to the folder above (%s)" % (tmp_path / "data") in str(info.value)
    # The CIFAR files straight in the folder given, whatever its name.
    other = tmp_path / "mycifar"
    other.mkdir()
    for name in data_plan.FILES["cifar10"]:
        (other / name).write_bytes(b"")
    with pytest.raises(workflow_study.ConfigError, match="holds the CIFAR-10 files itself"):
        data_plan.plan(dict(data_cfg, dir=str(other)), ["cifar10"], network=offline)
    # The folder above is right.
    for name in data_plan.FILES["cifar10"]:
        (folder / name).write_bytes(b"")
    assert data_plan.plan(data_cfg, ["cifar10"], network=offline)[0] == {"cifar10": "identify"}


def test_snakemake_names_the_data_keys(tmp_path):
    nodata = '"dir": "%s", "download": "off", "fallback": "none"' % (tmp_path / "nodata")
    code, out = dry_run('data={%s, "builder": "/nonexist/build.py"}' % nodata)
    assert code != 0
    assert config_error(out).startswith("config error: data.builder: /nonexist/build.py does not")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    code, out = dry_run('data={"dir": "%s"}' % folder)
    assert code != 0 and "data.dir: %s is a dataset folder itself" % folder in config_error(out)


# --- the image lock at DAG time ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("images: [\n", "is not valid YAML (line 2: expected the node content"),
        ("- a\n- b\n", "expected a mapping `images: {key: {tag, digest}}`"),
        (None, "does not exist"),
    ],
)
def test_lock_problems_are_one_line_naming_containers_lock(tmp_path, text, fragment):
    lock = tmp_path / "lock.yaml"
    if text is not None:
        lock.write_text(text)
    with pytest.raises(image_lock.LockError) as info:
        image_lock.read_images(str(lock))
    assert "\n" not in str(info.value) and fragment in str(info.value)
    if text is None:  # one dry run: the workflow reads the lock through image_lock
        code, out = dry_run(
            "runner=docker", 'axes={"torch": ["2.5.1"]}', 'containers={"lock": "%s"}' % lock
        )
        assert code != 0
        assert config_error(out) == "config error: containers.lock: %s does not exist" % lock


def test_a_lock_entry_that_is_not_a_mapping_is_one_line(tmp_path):
    lock = tmp_path / "lock.yaml"
    lock.write_text('images:\n  "2.5.1": pytorch/pytorch:2.5.1\n')
    with pytest.raises(image_lock.LockError, match="entry of '2.5.1' is .*expected a mapping"):
        image_lock.read_entry(str(lock), "2.5.1")


# --- text keys that look like numbers ------------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(open(os.path.join(REPO, "workflow", "schemas", "config.schema.yaml")))


def test_config_overrides_keep_text_keys_as_text(schema):
    overrides = {
        "axes": {"torch": ["2.10", "2"], "seed": ["1"], "augment": ["on"]},
        "data": {"builder": "null", "dir": "2024"},
        "exclude": [{"torch": "2.10", "seed": "1"}],
        "train": {"epochs": "3"},
    }
    merged = workflow_study.apply_overrides({}, overrides, schema)
    assert merged["axes"] == {"torch": ["2.10", "2"], "seed": [1], "augment": [True]}
    assert merged["data"] == {"builder": None, "dir": "2024"}
    assert merged["exclude"] == [{"torch": "2.10", "seed": 1}]
    assert merged["train"] == {"epochs": 3}
    # Without a schema (rerun commands), no key is a float: "2.10" stays text too.
    assert workflow_study.typed({"torch": ["2.10"], "epochs": "3"}) == {
        "torch": ["2.10"],
        "epochs": 3,
    }


def test_a_number_for_a_text_key_says_how_to_quote_it(schema):
    default = yaml.safe_load(open(os.path.join(REPO, "config", "config.yaml")))
    with pytest.raises(workflow_study.ConfigError) as info:
        workflow_study.validate(dict(default, study=2024), schema)
    assert str(info.value).startswith("config error: study: expected string, got 2024 (read")
    assert "--config 'study=!!str ...'" in str(info.value)
    axes = dict(default["axes"], torch=[2.1])
    with pytest.raises(workflow_study.ConfigError) as info:
        workflow_study.validate(dict(default, axes=axes), schema)
    assert "axes.torch[0]: expected string, got 2.1 (read as a number; quote it" in str(info.value)


def test_snakemake_keeps_a_torch_key_like_2_10(tmp_path):
    lock = tmp_path / "lock.yaml"
    lock.write_text('images:\n  "2.10":\n    tag: example/torch:2.10\n    digest: null\n')
    code, out = dry_run(
        "runner=docker",
        'axes={"torch": ["2.10"], "dataset": ["synthetic"]}',
        'containers={"lock": "%s"}' % lock,
    )
    assert code == 0, out
    assert "torch-2.10." in out and "torch-2.1." not in out
    code, out = dry_run("study=2024")
    assert code != 0 and "study: expected string, got 2024 (read as a number" in config_error(out)


def test_a_rerun_command_keeps_a_number_like_study_name_text():
    # The study named 2024 (given as `study=!!str 2024`): its cells' rerun commands must
    # name it so that Snakemake reads a string again, or every rerun would be refused.
    args = commands.cli_args([], {"study": "2024", "runner": "local", "train": {"epochs": "2"}})
    assert args == ["--config", "runner=local", "study=!!str 2024", 'train={"epochs": 2}']
    for name in ("1e5", "nan", "inf", "on", "null", "2.10"):  # int(), float() or YAML read these
        assert commands.str_tag(name) == "!!str " + name
    assert commands.str_tag("paper-2024") == "paper-2024"
    code, out = dry_run("study=!!str 2024", 'axes={"dataset": ["synthetic"]}')
    assert code == 0, out
    assert "results/2024/" in out


def test_a_seed_the_trainer_refuses_is_refused_when_the_study_is_planned():
    # densenet's --seed takes 0..2**32-1: a study must not plan cells that all fail on it.
    code, out = dry_run('axes={"seed": [4294967296], "dataset": ["synthetic"]}')
    assert code != 0 and "axes.seed" in config_error(out) and "4294967296" in config_error(out)
    code, out = dry_run('axes={"seed": [4294967295], "dataset": ["synthetic"]}')
    assert code == 0, out
