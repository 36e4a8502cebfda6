"""densenet/feed.py, the training loop's batches: one permutation per epoch and then the
augmentation draws, all from the epoch's generator in that order (a resumed run depends on
it), every image once, the partial batch last."""

import torch

from densenet.augment import Normalizer, augment
from densenet.data import make_synthetic
from densenet.feed import epoch_batches


def batches(seed, n=70, bs=16, augment_on=True, order="official"):
    ds = make_synthetic(n, 10)
    normalize = Normalizer(ds.mean, ds.std, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    x, y = ds.x_train, ds.y_train
    return ds, normalize, list(epoch_batches(x, y, bs, normalize, gen, augment_on, order))


def test_an_epoch_takes_every_image_once_in_whole_batches_then_the_rest():
    ds, _, got = batches(0)
    assert [len(yb) for _, yb in got] == [16, 16, 16, 16, 6]
    assert all(xb.shape == (len(yb), 3, 32, 32) and xb.dtype == torch.float32 for xb, yb in got)
    labels = torch.cat([yb for _, yb in got])
    assert sorted(labels.tolist()) == sorted(ds.y_train.tolist())


def test_the_permutation_comes_first_then_each_batch_draws_its_augmentation():
    ds, normalize, got = batches(7, order="bamos")
    gen = torch.Generator().manual_seed(7)
    perm = torch.randperm(70, generator=gen)
    for k, (xb, yb) in enumerate(got):
        idx = perm[16 * k : 16 * (k + 1)]
        want = augment(ds.x_train[idx], normalize, gen, "bamos")
        assert torch.equal(xb, want) and torch.equal(yb, ds.y_train[idx]), k


def test_without_augmentation_a_batch_is_the_normalized_images_and_the_seed_fixes_the_epoch():
    ds, normalize, got = batches(3, augment_on=False)
    perm = torch.randperm(70, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got[0][0], normalize(ds.x_train[perm[:16]]))
    first, again, other = batches(3)[2], batches(3)[2], batches(4)[2]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
