"""Data: identity by checksum, subsets, synthetic set, batch augmentation."""

import os
import shutil
import sys
import types

import pytest
import torch

from densenet import data
from densenet.augment import Normalizer, augment, random_crop


def test_jpeg75_identity_and_subset(cifar10_jpeg75):
    ds = data.load("cifar10", cifar10_jpeg75, n_train=5000, n_test=1000)
    assert ds.identity == "cifar10-jpeg75"
    assert ds.info()["comparable_with_published"] is False
    assert ds.x_train.shape == (5000, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.y_train.bincount().tolist() == [500] * 10
    assert ds.y_test.bincount().tolist() == [100] * 10
    # deterministic: the same subset every time
    again = data.load("cifar10", cifar10_jpeg75, n_train=5000, n_test=1000)
    assert torch.equal(ds.x_train, again.x_train)


def test_flipped_byte_is_unknown_and_refused(cifar10_jpeg75, tmp_path):
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(os.path.join(cifar10_jpeg75, "cifar-10-batches-py"), copy)
    path = copy / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert data.identify("cifar10", str(tmp_path))[0] == "unknown"
    with pytest.raises(data.DataError, match="not the official release"):
        data.load("cifar10", str(tmp_path), require="official")


def test_missing_files_one_line(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("cifar10", str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "data_batch_1" in msg and "--download on" in msg


def fake_torchvision(monkeypatch, files, then=None):
    """A torchvision whose CIFAR10(root, download=True) extracts `files` under root, then
    raises `then` (a failed or cut-off download) or returns."""

    def cifar10(root, train=True, download=False):
        out = os.path.join(root, "cifar-10-batches-py")
        os.makedirs(out, exist_ok=True)
        for name in files:
            with open(os.path.join(out, name), "wb") as f:
                f.write(b"downloaded " + name.encode())
        if then is not None:
            raise then

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=cifar10))
    monkeypatch.setitem(sys.modules, "torchvision", fake)


def test_failed_download_leaves_no_partial_dataset(monkeypatch, tmp_path):
    fake_torchvision(monkeypatch, data.FILES["cifar10"][:3], then=RuntimeError("reset by peer"))
    with pytest.raises(data.DataError, match="download failed .reset by peer."):
        data.download("cifar10", str(tmp_path))
    assert os.listdir(tmp_path) == []  # no dataset folder, no temp dir


def test_download_moves_a_complete_folder_into_place(monkeypatch, tmp_path):
    fake_torchvision(monkeypatch, data.FILES["cifar10"])
    data.download("cifar10", str(tmp_path))
    assert os.listdir(tmp_path) == ["cifar-10-batches-py"]
    assert data.missing_files("cifar10", str(tmp_path)) == []


def test_download_moves_an_incomplete_copy_aside(monkeypatch, tmp_path, capsys):
    old = tmp_path / "cifar-10-batches-py"
    old.mkdir()
    (old / "data_batch_1").write_bytes(b"somebody's partial copy")
    fake_torchvision(monkeypatch, data.FILES["cifar10"])
    data.download("cifar10", str(tmp_path))
    aside = "cifar-10-batches-py.incomplete-%d" % os.getpid()
    assert sorted(os.listdir(tmp_path)) == ["cifar-10-batches-py", aside]
    assert (tmp_path / aside / "data_batch_1").read_bytes() == b"somebody's partial copy"
    assert "moved the incomplete" in capsys.readouterr().err
    assert data.missing_files("cifar10", str(tmp_path)) == []


def test_synthetic_is_deterministic_and_balanced():
    a, b = data.make_synthetic(1000, 200), data.make_synthetic(1000, 200)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.y_train.bincount().tolist() == [100] * 10
    assert a.identity == "synthetic"


def test_random_crop_matches_slicing():
    g = torch.Generator().manual_seed(0)
    padded = torch.randn(5, 3, 40, 40, generator=g)
    oy, ox = torch.tensor([0, 8, 3, 5, 1]), torch.tensor([8, 0, 4, 2, 7])
    out = random_crop(padded, 32, oy, ox)
    for i in range(5):
        assert torch.equal(out[i], padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32])


def test_augment_official_pads_with_mean():
    x = torch.full((64, 3, 32, 32), 200, dtype=torch.uint8)
    norm = Normalizer((100.0, 100.0, 100.0), (50.0, 50.0, 50.0), "cpu")
    g = torch.Generator().manual_seed(0)
    out = augment(x, norm, g, "official")
    # normalized image = 2.0; the zero padding after normalization = the mean
    assert set(out.unique().tolist()) <= {0.0, 2.0} and (out == 0).any()
    out_b = augment(x, norm, torch.Generator().manual_seed(0), "bamos")
    assert set(out_b.unique().tolist()) <= {-2.0, 2.0}  # black border, normalized after


def test_augment_is_seeded_and_flips():
    x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu")
    a = augment(x, norm, torch.Generator().manual_seed(3))
    b = augment(x, norm, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    flipped = sum(torch.equal(a[i], x[i].float().flip(2)) for i in range(256))
    unchanged = sum(torch.equal(a[i], x[i].float()) for i in range(256))
    # centre crop (1/81) times flip or no flip: a few of each, never all
    assert flipped + unchanged < 32
