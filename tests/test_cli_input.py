"""Bad input at `python -m densenet` (every user-facing entry point): bad
arguments are one line naming the argument, exit 2, before any work and with nothing written;
a refused run leaves its directory as it was; wrong-content data files are named in one line.

Parser checks run in-process (main() raises SystemExit(2)); runs that get as far as the cell
directory run as subprocesses on a few synthetic images."""

import json
import os
import pickle
import signal
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MODEL, densenet, read_json, start_densenet, tiny_cell

from densenet import celldir, checkpoint, cli, data, train
from densenet.bench import benchmark as bench

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import commands  # noqa: E402

MODEL = ["--model", "densenet-bc40-k12"]
# A one-epoch cell that a subprocess trains in seconds: 20 synthetic images, batch 10.
TINY = tiny_cell(20, 20) + ["--epochs", "1", "--batch-size", "10"]
QUICK_BENCH = MODEL + ["--batch-size", "2", "--steps", "1", "--rounds", "1", "--warmup", "1"]
QUICK_BENCH += ["--data-images", "20", "--data-rounds", "1", "--profile", "off", "--feed", "off"]
QUICK_BENCH += ["--device", "cpu", "--threads", "1"]


def usage_error(capsys, argv):
    """Run main(argv), which must stop with exit 2 and one line; return that line."""
    with pytest.raises(SystemExit) as stop:
        cli.main([str(a) for a in argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The current directory, a fresh empty one holding one plain file `afile`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    return tmp_path


@pytest.mark.parametrize(
    "out, fragment",
    [
        ("afile", "argument --out: 'afile' is a file, expected a directory"),
        ("afile/sub", "argument --out: 'afile/sub' lies under the file "),
        ("", "argument --out: expected a non-empty path"),
    ],
)
@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_out_that_is_not_a_directory_is_a_usage_error(workdir, capsys, command, out, fragment):
    extra = TINY if command == "train" else ["--device", "cpu"]
    line = usage_error(capsys, [command, "--out", out] + extra)
    assert fragment in line and line.startswith("python -m densenet %s: error:" % command)
    assert sorted(os.listdir(str(workdir))) == ["afile"]  # no stray summary/gradcheck.json


@pytest.mark.parametrize(
    "out, fragment",
    [
        ("afile/x.json", "argument --out: 'afile/x.json' lies under the file "),
        ("", "argument --out: expected a non-empty path"),
    ],
)
def test_bench_out_is_checked_by_the_parser(workdir, capsys, out, fragment):
    assert fragment in usage_error(capsys, ["bench", "--out", out] + QUICK_BENCH)
    assert sorted(os.listdir(str(workdir))) == ["afile"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--lr", "nan"], "argument --lr: expected a finite positive number, got 'nan'"),
        (["--lr", "inf"], "argument --lr: expected a finite positive number"),
        (["--lr", "-5"], "argument --lr: expected a finite positive number, got '-5'"),
        (["--lr", "0"], "argument --lr: expected a finite positive number"),
        (["--dropout", "1.5"], "argument --dropout: expected a number in [0, 1), got '1.5'"),
        (["--dropout", "1"], "argument --dropout: expected a number in [0, 1)"),
        (["--dropout", "-0.1"], "argument --dropout: expected a number in [0, 1)"),
        (["--dropout", "nan"], "argument --dropout: expected a number in [0, 1)"),
        (["--seed", "99999999999999"], "argument --seed: expected an integer in 0..4294967295"),
        (["--seed", "-1"], "argument --seed: expected an integer in 0..4294967295"),
        (
            ["--require-official", "on"],
            "argument --require-official: 'on' contradicts --dataset synthetic",
        ),
        (["--stale-checkpoint", "keep"], "argument --stale-checkpoint: invalid choice"),
    ],
)
def test_out_of_range_train_options_are_usage_errors(workdir, capsys, args, fragment):
    line = usage_error(capsys, ["train", "--out", "cell"] + TINY + args)
    assert fragment in line
    assert sorted(os.listdir(str(workdir))) == ["afile"]  # no cell directory at all


def test_seed_range_ends_are_accepted():
    parser = cli.build_parser()
    for seed in ("0", "4294967295"):
        args = parser.parse_args(["train", "--out", "x", "--seed", seed] + TINY)
        assert args.seed == int(seed)


@pytest.mark.parametrize("command", ["train", "bench"])
def test_real_dataset_without_data_dir_is_a_usage_error(workdir, capsys, command):
    out = ["--out", "cell"] if command == "train" else ["--out", "b.json"]
    base = MODEL if command == "train" else QUICK_BENCH
    line = usage_error(capsys, [command] + out + base + ["--dataset", "cifar10"])
    assert (
        "argument --data-dir: --dataset cifar10 needs the folder holding cifar-10-batches-py"
        in (line)
    )
    assert sorted(os.listdir(str(workdir))) == ["afile"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--threads", "-2"], "argument --threads: expected a non-negative integer, got '-2'"),
        (["--num-workers", "-3"], "argument --num-workers: expected a non-negative integer"),
        (["--probe", "--models", "densenet-bc40-k12,nope"], "argument --models: invalid choice"),
        (["--probe", "--optimizers", "sgd,lbfgs"], "argument --optimizers: invalid choice"),
    ],
)
def test_bad_bench_arguments_are_usage_errors(workdir, capsys, args, fragment):
    assert fragment in usage_error(capsys, ["bench", "--out", "b.json"] + QUICK_BENCH + args)
    assert sorted(os.listdir(str(workdir))) == ["afile"]


# --- bench: problems found before the timing starts --------------------------------------


@pytest.fixture
def no_timing(monkeypatch):
    """Fail the test if the bench gets as far as timing steps; restore the torch threads that
    the in-process bench sets."""

    def timing(*args, **kwargs):
        raise AssertionError("the bench started timing before it checked its input")

    monkeypatch.setattr(bench, "bench_steps", timing)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def bench_main(capsys, argv):
    rc = cli.main(["bench"] + [str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_bench_data_error_is_one_line_before_timing(tmp_path, capsys, no_timing):
    data_dir = cifar_dir(tmp_path / "data")
    write_pickle(data_dir / data.FOLDERS["cifar10"] / "data_batch_2", {"labels": [0]})
    argv = ["--out", tmp_path / "b.json"] + QUICK_BENCH
    rc, err = bench_main(capsys, argv + ["--dataset", "cifar10", "--data-dir", data_dir])
    assert rc == 1 and err[-1].startswith("error: dataset file "), err
    assert "data_batch_2: expected a dict with 'data'" in err[-1]
    assert not any("Traceback" in line for line in err)
    rc, err = bench_main(capsys, argv + ["--dataset", "cifar10", "--data-dir", tmp_path / "no"])
    assert rc == 1 and err == [err[0]] and err[0].startswith("error: dataset cifar10: "), err
    assert not os.path.exists(str(tmp_path / "b.json"))


def test_bench_checks_its_out_is_writable_before_timing(tmp_path, capsys, monkeypatch, no_timing):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bench.tempfile, "TemporaryFile", refuse)
    rc, err = bench_main(capsys, ["--out", tmp_path / "b.json"] + QUICK_BENCH)
    assert rc == 1
    assert err == [
        "error: --out %s: cannot write there (Permission denied)" % (tmp_path / "b.json")
    ]


# --- data: pickles of the right name and the wrong content --------------------------------


def write_pickle(path, obj):
    with open(str(path), "wb") as f:
        pickle.dump(obj, f, protocol=4)


def cifar_dir(root, per_file=10):
    """A tiny CIFAR-10 copy in the official layout: per_file images (every class) per file."""
    folder = root / data.FOLDERS["cifar10"]
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in data.FILES["cifar10"]:
        if name == "batches.meta":
            write_pickle(folder / name, {"label_names": ["c%d" % c for c in range(10)]})
            continue
        images = rng.randint(0, 256, size=(per_file, 3072)).astype(np.uint8)
        labels = [i % 10 for i in range(per_file)]
        write_pickle(folder / name, {"batch_label": name, "labels": labels, "data": images})
    return root


GOOD = {"labels": [0, 1], "data": np.zeros((2, 3072), np.uint8)}


@pytest.mark.parametrize(
    "content, found",
    [
        ([1, 2, 3], "found a list"),
        ({"fine_labels": [0, 1], "data": GOOD["data"]}, "found a dict without 'labels'"),
        ({"labels": [0, 1]}, "found a dict without 'data'"),
        (dict(GOOD, data=np.zeros((2, 100), np.uint8)), "found 'data' of shape (2, 100)"),
        (dict(GOOD, data=np.full((2, 3072), 300)), "'data' of int64 values outside 0..255"),
        (dict(GOOD, labels=[0, 12]), "found labels in 0..12"),
        (dict(GOOD, labels=[-1, 0]), "found labels in -1..0"),
        (dict(GOOD, labels=["x", "y"]), "found 'labels' of <U1"),
        (dict(GOOD, labels=[0, 1, 2]), "found 2 rows with labels of shape (3,)"),
    ],
)
def test_wrong_pickle_content_is_one_data_error_naming_the_file(tmp_path, content, found):
    root = cifar_dir(tmp_path)
    bad = root / data.FOLDERS["cifar10"] / "data_batch_1"
    write_pickle(bad, content)
    with pytest.raises(data.DataError) as exc:
        data.load("cifar10", str(root))
    text = str(exc.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(
        "dataset file %s: expected a dict with 'data' (N x 3072 uint8) and 'labels' "
        "(N values in 0..9), found " % bad
    )
    assert found in text


def test_a_good_tiny_copy_still_loads(tmp_path):
    ds = data.load("cifar10", str(cifar_dir(tmp_path)))
    assert tuple(ds.x_train.shape) == (50, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.y_train.tolist()[:10] == list(range(10)) and ds.y_test.numel() == 10


def test_subset_larger_than_the_set_is_noted_and_recorded_as_used(tmp_path, capsys):
    ds = data.load("cifar10", str(cifar_dir(tmp_path)), n_train=100000, n_test=5)
    cfg = {"n_train": 100000, "n_test": 5}
    train.fit_sizes(cfg, ds)
    assert cfg == {"n_train": 50, "n_test": 5}  # as env.json's dataset record says
    assert capsys.readouterr().err.splitlines() == [
        "note: --n-train 100000 is more than the 50 training images of cifar10; using all 50"
    ]


# --- train: a directory holding another run's files ---------------------------------------


def other_run(cell):
    """A finished cell of another config (completed summary, metrics, env, a checkpoint of
    another model, as keep_checkpoint on leaves it); returns its files' bytes."""
    cell.mkdir()
    checkpoint.save(str(cell / "checkpoint.pt"), {"epoch": 1, "config": {"model": "other"}})
    (cell / "summary.json").write_text(json.dumps({"status": "completed", "config": {}}))
    (cell / "metrics.csv").write_text("epoch,test_err\n1,50.0\n")
    (cell / "env.json").write_text(json.dumps({"config": {"model": "other"}}))
    return files(cell)


def files(cell):
    return {name: (cell / name).read_bytes() for name in sorted(os.listdir(str(cell)))}


def test_a_refused_checkpoint_leaves_the_directory_as_it_was(tmp_path):
    cell = tmp_path / "cell"
    before, ckpt = other_run(cell), cell / "checkpoint.pt"
    res = densenet("train", "--out", cell, *TINY)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint %s was made with a different config (" % ckpt)
    assert "model: 'other' vs '%s'" % TINY_MODEL in last
    assert last.endswith("pass --stale-checkpoint restart") and "Traceback" not in res.stderr
    assert files(cell) == before  # no new env.json, no `failed` summary over the result


def test_a_data_error_keeps_another_runs_result(tmp_path):
    cell = tmp_path / "cell"
    before = other_run(cell)
    res = densenet("train", "--out", cell, *MODEL, "--data-dir", tmp_path / "nodata")
    assert res.returncode == 1 and "error: dataset cifar10: " in res.stderr
    assert files(cell) == before


def test_stale_checkpoint_restart_moves_it_aside_and_starts_afresh(tmp_path):
    cell = tmp_path / "cell"
    before, ckpt = other_run(cell), cell / "checkpoint.pt"
    res = densenet("train", "--out", cell, *TINY, "--stale-checkpoint", "restart")
    assert res.returncode == 0, res.stderr
    [note] = [line for line in res.stderr.splitlines() if "checkpoint.pt" in line]
    assert note.startswith("checkpoint %s was made with a different config (" % ckpt)
    assert note.endswith("; moved to checkpoint.pt.stale, starting the cell from epoch 1")
    assert "model: 'other' vs '%s'" % TINY_MODEL in note
    assert (cell / "checkpoint.pt.stale").read_bytes() == before["checkpoint.pt"]
    assert [r.split(",")[0] for r in (cell / "metrics.csv").read_text().splitlines()] == [
        "epoch",
        "1",
    ]
    summary = read_json(cell / "summary.json")
    assert summary["status"] == "completed" and summary["epochs_done"] == 1
    assert summary["config"]["stale_checkpoint"] == "restart"


def test_stale_checkpoint_is_resume_neutral_and_the_workflow_restarts():
    cfg = {"model": "densenet-bc40-k12", "stale_checkpoint": "refuse"}
    assert celldir.resume_key(cfg) == celldir.resume_key(dict(cfg, stale_checkpoint="restart"))
    options = {"train": {"keep_checkpoint": "on", "overlap": "on"}}
    args = commands.train_options(options)
    assert args[args.index("--stale-checkpoint") + 1] == "restart"


def test_a_rerun_removes_the_summary_it_supersedes_before_training(tmp_path):
    """Killed in its second epoch, a rerun into a finished cell must not leave that cell's
    `completed` summary beside its own metrics and checkpoint (the cell reads `running`)."""
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "summary.json").write_text(json.dumps({"status": "completed", "config": {}}))
    proc = start_densenet("train", "--out", cell, *tiny_cell(20, 20), "--epochs", "50")
    try:
        seen = []  # stdout and stderr merged: notes may come first
        while not (seen and seen[-1].startswith("epoch 1/50")):
            seen.append(proc.stdout.readline())
            assert seen[-1], "".join(seen)  # the run ended before its first epoch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not os.path.exists(str(cell / "summary.json"))
    assert os.path.exists(str(cell / "metrics.csv")) and os.path.exists(str(cell / "env.json"))
