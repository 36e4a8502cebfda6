"""augment(): bit for bit the plain pad-crop-flip pipeline it replaces, for both orders, every
offset and flip, on the same random draws."""

import pytest
import torch

from densenet.augment import PAD, Normalizer, augment, random_crop


def pad_crop_flip(x_uint8, normalize, generator, order):
    """The reference: pad the normalized (official) or raw (bamos) batch, crop with two
    gathers, flip; the same draws in the same order as augment()."""
    n, _, h, _ = x_uint8.shape
    pad = torch.nn.functional.pad
    if order == "official":
        x = pad(normalize(x_uint8), (PAD, PAD, PAD, PAD))
    else:
        x = normalize(pad(x_uint8, (PAD, PAD, PAD, PAD)))
    draws = torch.randint(0, 2 * PAD + 1, (2, n), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    x = random_crop(x, h, draws[0], draws[1])
    return torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)


@pytest.mark.parametrize("order", ["official", "bamos"])
def test_augment_equals_pad_crop_flip_bitwise(order):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (600, 3, 32, 32), dtype=torch.uint8, generator=gen)
    norm = Normalizer((125.3, 123.0, 113.9), (63.0, 62.1, 66.7), torch.device("cpu"))
    for seed in range(3):
        got = augment(x, norm, torch.Generator().manual_seed(seed), order)
        ref = pad_crop_flip(x, norm, torch.Generator().manual_seed(seed), order)
        assert got.shape == ref.shape == (600, 3, 32, 32) and got.is_contiguous()
        # Same bits, so +0.0 and -0.0 count as different.
        assert torch.equal(got.view(torch.int32), ref.view(torch.int32))
    # 600 images cover all 81 offsets and both flips with near certainty; check they did.
    draws = torch.randint(0, 9, (2, 600), generator=torch.Generator().manual_seed(0))
    assert len(set(zip(draws[0].tolist(), draws[1].tolist()))) == 81
