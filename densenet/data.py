"""Datasets: CIFAR-10/100 in the official python-pickle layout, identified by checksum, and a
generated, learnable ``synthetic`` set for offline demos.

Every dataset comes back as uint8 tensors (N, 3, 32, 32) and int64 labels, the whole set at
once: CIFAR is 150 MB as uint8, so it lives on the training device and batches are sliced and
augmented there (see augment.py); there are no worker processes and no per-image Python.
"""

import hashlib
import os
import pickle
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

DATASETS = ("cifar10", "cifar100", "synthetic")
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
FILES = {
    "cifar10": ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch", "batches.meta"],
    "cifar100": ["train", "test", "meta"],
}
# The official MD5s, as torchvision's CIFAR10/CIFAR100 classes list them.
OFFICIAL_MD5 = {
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}
# SHA256SUMS of the offline rebuild from JPEG copies (shared/data/cifar10-jpeg75): real
# images, lossy pixels. Results on it must never be compared with published numbers.
JPEG75_SHA256 = {
    "batches.meta": "77b67fac8dbd467f9ed9048f47f55c788ffa1897cb11f41ce73d1131da0f41e0",
    "data_batch_1": "81ae7b3a1ec40a52e81db5474a237800b8604591749786f921efaa2761831146",
    "data_batch_2": "515e3f02711df83f99561aea4cb312a57aab2410794caab574b6637b1201b56a",
    "data_batch_3": "1a3642e6f5c6faca22757eea22a313b746c8a1a452635fc2af625eb76b426bba",
    "data_batch_4": "80a9358f7a8cdbaf5c7b3f3e7f1afa711e9eaec8e7dcdbaf45776e87f3dce292",
    "data_batch_5": "38a4166a4757c91bc337ed568dcfe9811384237c24281f5356e8c36811cd654f",
    "test_batch": "cff3191af74cb04793b9374ab45b5b0faccba7c61687ab3aea720b6220e459c7",
}
# Per-channel mean and std on the 0-255 scale used by the official Lua code (fb.resnet).
NORMALIZATION = {
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
SYNTHETIC_SIZE = (10000, 2000)  # train, test when no subset is asked for
SYNTHETIC_SEED = 20170209  # fixed: the synthetic set is one dataset, not a function of --seed


class DataError(Exception):
    """A dataset problem the user can fix; the message is one line that says how."""


class Dataset(object):
    """Whole-split uint8 tensors plus what identifies them."""

    def __init__(self, name, x_train, y_train, x_test, y_test, identity, checksums, mean, std):
        self.name, self.identity, self.checksums = name, identity, checksums
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.mean, self.std = mean, std
        self.num_classes = NUM_CLASSES[name]

    def info(self):
        """The env.json "dataset" record."""
        return {
            "name": self.name,
            "identity": self.identity,
            "checksums": self.checksums,
            "n_train": int(self.y_train.numel()),
            "n_test": int(self.y_test.numel()),
            "comparable_with_published": self.identity == "official",
        }


def file_digests(path: str) -> Dict[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def folder(name: str, data_dir: str) -> str:
    return os.path.join(data_dir, FOLDERS[name])


def missing_files(name: str, data_dir: str) -> List[str]:
    return [f for f in FILES[name] if not os.path.isfile(os.path.join(folder(name, data_dir), f))]


def identify(name: str, data_dir: str) -> Tuple[str, Dict[str, Dict[str, str]]]:
    """Return (identity, checksums): official | cifar10-jpeg75 | unknown, by file checksums."""
    root = folder(name, data_dir)
    sums = {f: file_digests(os.path.join(root, f)) for f in FILES[name]}
    if all(sums[f]["md5"] == md5 for f, md5 in OFFICIAL_MD5[name].items()):
        return "official", sums
    if name == "cifar10" and all(sums[f]["sha256"] == s for f, s in JPEG75_SHA256.items()):
        return "cifar10-jpeg75", sums
    return "unknown", sums


def download(name, data_dir):
    """Fetch the official archive through torchvision (which verifies its MD5).

    torchvision downloads and extracts into a temp dir beside the target, and the finished
    folder is then moved into place: a download or extraction that is killed or fails never
    leaves a partial dataset where identify() and load() would read it.
    """
    try:
        import torchvision
    except ImportError:
        raise DataError(
            "dataset %s: downloading needs torchvision, which is not installed; "
            "put the official python version under %s instead" % (name, folder(name, data_dir))
        ) from None
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    os.makedirs(data_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=data_dir)
    try:
        try:
            cls(tmp, train=True, download=True)
        except Exception as exc:
            raise DataError(
                "dataset %s: download failed (%s); without network, copy the official "
                "python version to %s" % (name, str(exc).splitlines()[0], folder(name, data_dir))
            ) from None
        install_folder(name, tmp, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_folder(name, src_dir, data_dir):
    """Move the complete dataset folder under ``src_dir`` (a temp data dir) into ``data_dir``
    by one rename.

    If a complete copy got there first (another job), the new one is left for the caller to
    delete. An incomplete folder in the way is moved aside to ``<folder>.incomplete-<pid>``,
    never deleted: it may be somebody's data.
    """
    missing = missing_files(name, src_dir)
    if missing:
        raise DataError(
            "dataset %s: the new copy lacks %s; nothing was installed" % (name, ", ".join(missing))
        )
    target = folder(name, data_dir)
    if os.path.isdir(target):
        if not missing_files(name, data_dir):
            return
        aside = "%s.incomplete-%d" % (target, os.getpid())
        os.replace(target, aside)
        sys.stderr.write(
            "dataset %s: moved the incomplete %s aside to %s\n" % (name, target, aside)
        )
    os.replace(folder(name, src_dir), target)


def _unpickle(path):
    with open(path, "rb") as f:
        try:
            return pickle.load(f, encoding="latin1")
        except Exception as exc:
            raise DataError(
                "dataset file %s is not a CIFAR pickle (%s); replace it with an intact "
                "copy" % (path, str(exc).splitlines()[0] or type(exc).__name__)
            ) from None


def _batch(path, label_key, num_classes):
    """(data uint8 N x 3072, labels int64) of one batch file, checked: a pickle of the right
    name but another content (a CIFAR-100 file, a re-pickled list) is named here in one line,
    not met later as a KeyError or an out-of-range target in the loss."""
    entry = _unpickle(path)
    found = _batch_problem(entry, label_key, num_classes)
    if found:
        raise DataError(
            "dataset file %s: expected a dict with 'data' (N x 3072 uint8) and %r (N values "
            "in 0..%d), found %s; replace it with an intact copy"
            % (path, label_key, num_classes - 1, found)
        )
    return np.asarray(entry["data"], dtype=np.uint8), np.asarray(entry[label_key], np.int64)


def _batch_problem(entry, label_key, num_classes):
    """What is wrong with an unpickled batch (a few words), or None."""
    if not isinstance(entry, dict):
        return "a %s" % type(entry).__name__
    missing = [k for k in ("data", label_key) if k not in entry]
    if missing:
        return "a dict without %s" % " or ".join(repr(k) for k in missing)
    data, labels = _array(entry["data"]), _array(entry[label_key])
    if data is None or labels is None:
        return "%r that is not an array" % ("data" if data is None else label_key)
    if data.ndim != 2 or data.shape[1] != 3072:
        return "'data' of shape %s" % (data.shape,)
    if data.dtype != np.uint8 and not _ints_within(data, 0, 255):
        return "'data' of %s values outside 0..255" % data.dtype
    if labels.ndim != 1 or len(labels) != len(data):
        return "%d rows with labels of shape %s" % (len(data), labels.shape)
    if not _ints_within(labels, 0, num_classes - 1):
        if labels.dtype.kind not in "iu":
            return "%r of %s" % (label_key, labels.dtype)
        return "labels in %d..%d" % (labels.min(), labels.max())
    return None


def _array(value):
    try:
        return np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists, say
        return None


def _ints_within(values, low, high):
    return values.dtype.kind in "iu" and (
        values.size == 0 or (int(values.min()) >= low and int(values.max()) <= high)
    )


def _arrays(batches):
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def load_cifar(
    name: str, data_dir: str, allow_download: bool = False, require: Optional[str] = None
) -> "Dataset":
    """Load CIFAR-10/100 from data_dir/<official folder>; return a Dataset.

    ``require`` = "official" refuses any copy whose checksums are not the official ones.
    """
    missing = missing_files(name, data_dir)
    if missing and allow_download:
        download(name, data_dir)
        missing = missing_files(name, data_dir)
    if missing:
        raise DataError(
            "dataset %s: %s missing under %s; put the official python version there, "
            "or run with --download on where the network is reachable"
            % (name, ", ".join(missing), folder(name, data_dir))
        )
    identity, sums = identify(name, data_dir)
    if require == "official" and identity != "official":
        raise DataError(
            "dataset %s under %s is %s, not the official release (MD5 mismatch); "
            "this run requires the official data" % (name, folder(name, data_dir), identity)
        )
    root = folder(name, data_dir)
    if name == "cifar10":
        train_files, test_files = ["data_batch_%d" % i for i in range(1, 6)], ["test_batch"]
    else:
        train_files, test_files = ["train"], ["test"]
    key = "labels" if name == "cifar10" else "fine_labels"

    def batches(files):
        return [_batch(os.path.join(root, f), key, NUM_CLASSES[name]) for f in files]

    x_tr, y_tr = _arrays(batches(train_files))
    x_te, y_te = _arrays(batches(test_files))
    mean, std = NORMALIZATION[name]
    return Dataset(name, x_tr, y_tr, x_te, y_te, identity, sums, mean, std)


def make_synthetic(n_train: Optional[int] = None, n_test: Optional[int] = None) -> "Dataset":
    """A generated 10-class 32x32 set: each class a smooth colour pattern, each image that
    pattern shifted, rescaled and noised. Learnable by a small convnet within an epoch or two,
    robust to crop-and-flip augmentation, identical on every machine (numpy RandomState)."""
    n_train = n_train or SYNTHETIC_SIZE[0]
    n_test = n_test or SYNTHETIC_SIZE[1]
    rng = np.random.RandomState(SYNTHETIC_SEED)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    protos = []
    for _ in range(10):
        img = np.zeros((3, 40, 40))
        for c in range(3):
            fx, fy = rng.uniform(0.5, 3.0, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            img[c] = np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
        protos.append(img * 60.0 + rng.uniform(80, 175, size=(3, 1, 1)))
    protos = np.stack(protos)

    def sample(n):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        dx, dy = rng.randint(0, 9, size=(2, n))
        gain = rng.uniform(0.8, 1.2, size=(n, 1, 1, 1))
        out = np.empty((n, 3, 32, 32))
        for i in range(n):
            out[i] = protos[labels[i], :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out = out * gain + rng.normal(0, 20.0, size=out.shape)
        return np.clip(out, 0, 255).astype(np.uint8), labels.astype(np.int64)

    x_tr, y_tr = sample(n_train)
    x_te, y_te = sample(n_test)
    digest = hashlib.sha256(x_tr.tobytes() + y_tr.tobytes() + x_te.tobytes() + y_te.tobytes())
    mean = tuple(float(m) for m in x_tr.mean(axis=(0, 2, 3)))
    std = tuple(float(s) for s in x_tr.std(axis=(0, 2, 3)))
    return Dataset(
        "synthetic",
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        "synthetic",
        {"generated": {"sha256": digest.hexdigest(), "seed": SYNTHETIC_SEED}},
        mean,
        std,
    )


def balanced_subset(
    labels: torch.Tensor, n: Optional[int], num_classes: int
) -> Optional[torch.Tensor]:
    """Indices of the first n // num_classes images of each class, in dataset order (the
    remainder goes to the lowest classes). Deterministic and independent of the seed."""
    if n is None or n >= labels.numel():
        return None
    per_class = [n // num_classes + (1 if c < n % num_classes else 0) for c in range(num_classes)]
    picked = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()[: per_class[c]]
        if idx.numel() < per_class[c]:
            raise DataError("subset of %d: class %d has only %d images" % (n, c, idx.numel()))
        picked.append(idx)
    return torch.sort(torch.cat(picked)).values


def load(
    name: str,
    data_dir: Optional[str] = None,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    allow_download: bool = False,
    require: Optional[str] = None,
) -> "Dataset":
    """Load a dataset by name and cut the class-balanced subsets asked for."""
    if name not in DATASETS:
        raise DataError("dataset: expected one of %s, got %r" % (", ".join(DATASETS), name))
    if name == "synthetic":
        return make_synthetic(n_train, n_test)
    if not data_dir:
        raise DataError(
            "dataset %s needs --data-dir (the folder holding %s)" % (name, FOLDERS[name])
        )
    ds = load_cifar(name, data_dir, allow_download=allow_download, require=require)
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = getattr(ds, "x_" + split), getattr(ds, "y_" + split)
        idx = balanced_subset(y, n, ds.num_classes)
        if idx is not None:
            setattr(ds, "x_" + split, x[idx])
            setattr(ds, "y_" + split, y[idx])
    return ds
