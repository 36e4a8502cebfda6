"""Fault suite, dataset copies: a flipped byte in a batch file makes the copy
`unknown` (recorded in env.json and in prepare_data's record) and is refused, in one line,
wherever the official data is required (`--require-official on`, a study with
data.require_official such as config/studies/paper.yaml); a missing or truncated batch file
gives one line saying what to do; a dataset build that dies half-way leaves nothing behind,
and an incomplete copy in the way is moved aside, never deleted.

The real release cannot be reproduced here (its MD5s are fixed), so a small CIFAR-10 copy is
generated in code and registered as official through tests/faultinject.py --official-md5: the
same code path then decides official vs unknown."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO
from faultlib import error_lines, flip_byte, inject, read_json, truncate

from densenet import data

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import commands  # noqa: E402
import study  # noqa: E402

PREPARE_DATA = os.path.join(REPO, "workflow", "scripts", "prepare_data.py")
PER_CLASS = {"train": 6, "test": 10}  # per batch file: 60 images x 5 train batches, 100 test


def write_pickle(path, obj):
    # Protocol 4 stores the pixel array as raw bytes, as the release's Python 2 pickles do
    # (protocol 2 in Python 3 would store them as UTF-8 text, where a flipped byte breaks the
    # pickle instead of changing a pixel).
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


@pytest.fixture(scope="module")
def cifar_copy(tmp_path_factory):
    """(data dir, official.json): a CIFAR-10 copy in the official layout, and its MD5s."""
    root = tmp_path_factory.mktemp("tiny-cifar10")
    folder = root / data.FOLDERS["cifar10"]
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in data.FILES["cifar10"]:
        if name == "batches.meta":
            names = ["class%d" % c for c in range(10)]
            write_pickle(folder / name, {"label_names": names, "num_vis": 3072})
            continue
        n = PER_CLASS["test" if name == "test_batch" else "train"] * 10
        labels = [i % 10 for i in range(n)]
        images = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        write_pickle(folder / name, {"batch_label": name, "labels": labels, "data": images})
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in data.FILES["cifar10"]}
    official = root / "official.json"
    official.write_text(json.dumps(md5))
    return root, official


def copy_of(cifar_copy, tmp_path):
    """A writable copy of the data dir, and the path of the batch file the tests damage."""
    src, _ = cifar_copy
    dst = tmp_path / "data"
    shutil.copytree(str(src / data.FOLDERS["cifar10"]), str(dst / data.FOLDERS["cifar10"]))
    return dst, dst / data.FOLDERS["cifar10"] / "data_batch_3"


def train(cifar_copy, data_dir, out, *extra):
    return inject(
        "--official-md5",
        cifar_copy[1],
        "--",
        "densenet",
        "train",
        "--out",
        out,
        "--model",
        "densenet-bc40-k12",
        "--dataset",
        "cifar10",
        "--data-dir",
        data_dir,
        "--n-train",
        "100",
        "--n-test",
        "50",
        "--epochs",
        "1",
        "--device",
        "cpu",
        *extra,
    )


def prepare(cifar_copy, data_dir, out, *extra):
    return inject(
        "--official-md5",
        cifar_copy[1],
        "--",
        PREPARE_DATA,
        "--dataset",
        "cifar10",
        "--data-dir",
        data_dir,
        "--action",
        "identify",
        "--out",
        out,
        *extra,
    )


@pytest.mark.slow
def test_intact_copy_is_official_and_trains_when_official_is_required(cifar_copy, tmp_path):
    """The control: without damage, the copy passes the check the damaged one fails."""
    data_dir, _ = copy_of(cifar_copy, tmp_path)
    res = train(cifar_copy, data_dir, tmp_path / "cell", "--require-official", "on")
    assert res.returncode == 0, res.stderr
    assert read_json(tmp_path / "cell" / "env.json")["dataset"]["identity"] == "official"


@pytest.mark.slow
def test_flipped_byte_is_unknown_in_env_json(cifar_copy, tmp_path):
    data_dir, batch = copy_of(cifar_copy, tmp_path)
    flip_byte(str(batch), batch.stat().st_size // 2)  # a pixel: the pickle still loads
    res = train(cifar_copy, data_dir, tmp_path / "cell")
    assert res.returncode == 0, res.stderr
    assert "warning: dataset identity is unknown" in res.stderr
    dataset = read_json(tmp_path / "cell" / "env.json")["dataset"]
    assert dataset["identity"] == "unknown" and dataset["comparable_with_published"] is False
    official = json.loads(cifar_copy[1].read_text())
    assert dataset["checksums"]["data_batch_3"]["md5"] != official["data_batch_3"]
    assert dataset["checksums"]["data_batch_2"]["md5"] == official["data_batch_2"]
    assert read_json(tmp_path / "cell" / "summary.json")["dataset_identity"] == "unknown"


def test_flipped_byte_is_refused_when_official_is_required(cifar_copy, tmp_path):
    data_dir, batch = copy_of(cifar_copy, tmp_path)
    flip_byte(str(batch), batch.stat().st_size // 2)
    res = train(cifar_copy, data_dir, tmp_path / "cell", "--require-official", "on")
    assert res.returncode == 1
    assert error_lines(res.stderr) == [res.stderr.strip().splitlines()[-1]]
    assert "Traceback" not in res.stderr
    expected = "error: dataset cifar10 under %s is unknown, not the official release" % (
        data_dir / data.FOLDERS["cifar10"]
    )
    assert error_lines(res.stderr)[0].startswith(expected)
    assert read_json(tmp_path / "cell" / "summary.json")["status"] == "failed"
    assert sorted(os.listdir(str(tmp_path / "cell"))) == ["summary.json"]  # nothing trained


def test_prepare_data_records_unknown_and_refuses_it_when_required(cifar_copy, tmp_path):
    data_dir, batch = copy_of(cifar_copy, tmp_path)
    intact = prepare(cifar_copy, data_dir, tmp_path / "intact.json", "--require-official")
    assert intact.returncode == 0, intact.stderr
    assert read_json(tmp_path / "intact.json")["identity"] == "official"

    flip_byte(str(batch), batch.stat().st_size // 2)
    refused = prepare(cifar_copy, data_dir, tmp_path / "refused.json", "--require-official")
    assert refused.returncode == 1
    assert error_lines(refused.stderr) == [refused.stderr.strip()]  # one line, nothing else
    assert "is unknown, not the official release; this study requires" in refused.stderr
    assert not (tmp_path / "refused.json").exists()

    recorded = prepare(cifar_copy, data_dir, tmp_path / "unknown.json")
    assert recorded.returncode == 0, recorded.stderr
    record = read_json(tmp_path / "unknown.json")
    assert record["identity"] == "unknown" and record["comparable_with_published"] is False


def test_studies_that_require_official_data_pass_it_to_every_job():
    """config/studies/paper.yaml asks for the official data; the flag reaches prepare_data
    (rule prepare_data) and every training job (commands.train_args)."""
    with open(os.path.join(REPO, "workflow", "schemas", "config.schema.yaml")) as f:
        schema = yaml.safe_load(f)
    with open(os.path.join(REPO, "config", "studies", "paper.yaml")) as f:
        cfg = study.validate(yaml.safe_load(f), schema)
    assert cfg["data"]["require_official"] is True
    cells, _ = study.build_matrix(cfg, {"cifar10": "cifar10"})
    for cell in cells:
        argv = [str(a) for a in commands.train_args(cfg, cell["params"])]
        assert argv[argv.index("--require-official") + 1] == "on"
    with open(os.path.join(REPO, "workflow", "rules", "data.smk")) as f:
        assert "{params.require_official}" in f.read()


def test_missing_batch_file_is_one_line_with_the_fix(cifar_copy, tmp_path):
    data_dir, _ = copy_of(cifar_copy, tmp_path)
    os.remove(str(data_dir / data.FOLDERS["cifar10"] / "data_batch_4"))
    where = "data_batch_4 missing under %s; put the official python version there" % (
        data_dir / data.FOLDERS["cifar10"]
    )
    res = train(cifar_copy, data_dir, tmp_path / "cell")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert error_lines(res.stderr) == [
        "error: dataset cifar10: %s, or run with --download on "
        "where the network is reachable" % where
    ]
    res = prepare(cifar_copy, data_dir, tmp_path / "record.json")
    assert res.returncode == 1
    assert res.stderr.strip() == "error: dataset cifar10: %s" % where


def test_truncated_batch_file_is_named_with_the_fix(cifar_copy, tmp_path):
    data_dir, batch = copy_of(cifar_copy, tmp_path)
    truncate(str(batch), 0.5)
    res = train(cifar_copy, data_dir, tmp_path / "cell")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    [line] = error_lines(res.stderr)
    assert line.startswith("error: dataset file %s is not a CIFAR pickle (" % batch)
    assert line.endswith("); replace it with an intact copy")


def write_builder(path, files, exit_code):
    """An offline builder (prepare_data --action build) that writes `files` and exits."""
    path.write_text(
        "import os, sys\n"
        "out = os.path.join(sys.argv[1], 'cifar-10-batches-py')\n"
        "os.makedirs(out)\n"
        "for name in %r:\n"
        "    open(os.path.join(out, name), 'wb').write(b'built')\n"
        "sys.exit(%d)\n" % (list(files), exit_code)
    )


def build(tmp_path, builder):
    cmd = [sys.executable, PREPARE_DATA, "--dataset", "cifar10", "--data-dir", tmp_path / "data"]
    cmd += ["--action", "build", "--builder", builder, "--out", tmp_path / "record.json"]
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True)


def test_a_build_that_dies_half_way_leaves_no_partial_dataset(tmp_path):
    write_builder(tmp_path / "dies.py", data.FILES["cifar10"][:3], 1)
    res = build(tmp_path, tmp_path / "dies.py")
    assert res.returncode == 1
    [line] = error_lines(res.stderr)
    assert line.startswith("error: Command") and "dies.py" in line and "exit status 1" in line
    assert os.listdir(str(tmp_path / "data")) == []  # no dataset folder, no temp dir
    assert not (tmp_path / "record.json").exists()


def test_a_build_moves_an_incomplete_copy_aside(tmp_path):
    old = tmp_path / "data" / data.FOLDERS["cifar10"]
    old.mkdir(parents=True)
    (old / "data_batch_1").write_bytes(b"partial")
    write_builder(tmp_path / "builds.py", data.FILES["cifar10"], 0)
    res = build(tmp_path, tmp_path / "builds.py")
    assert res.returncode == 0, res.stderr
    names = sorted(os.listdir(str(tmp_path / "data")))
    assert names[0] == data.FOLDERS["cifar10"] and names[1].startswith(names[0] + ".incomplete-")
    assert (tmp_path / "data" / names[1] / "data_batch_1").read_bytes() == b"partial"
    assert read_json(tmp_path / "record.json")["identity"] == "unknown"
