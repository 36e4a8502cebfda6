"""Whole-batch augmentation on the training device: normalize, zero-pad 4, random 32x32 crop,
random horizontal flip, with no per-image Python.

Order matters for the padded border. The official Lua code normalizes first and pads with
zeros afterwards, so padded pixels equal the channel mean (``order="official"``); bamos'
torchvision pipeline pads raw pixels with black and normalizes after (``order="bamos"``).
All randomness comes from the generator passed in, so a run is reproducible from its seed.
"""
import torch

PAD = 4
ORDERS = ("official", "bamos")


class Normalizer(object):
    """uint8 (N, 3, H, W) -> float32 normalized, with the per-channel 0-255 mean and std."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, x_uint8):
        return (x_uint8.float() - self.mean) / self.std


def random_crop(padded, size, offsets_y, offsets_x):
    """Crop size x size windows at per-image offsets from a padded batch, with two gathers."""
    n, c, h, w = padded.shape
    ar = torch.arange(size, device=padded.device)
    rows = (offsets_y.view(n, 1) + ar.view(1, size)).view(n, 1, size, 1).expand(n, c, size, w)
    out = torch.gather(padded, 2, rows)
    cols = (offsets_x.view(n, 1) + ar.view(1, size)).view(n, 1, 1, size).expand(n, c, size, size)
    return torch.gather(out, 3, cols)


def augment(x_uint8, normalize, generator, order="official", pad=PAD):
    """Normalize, pad, crop and flip one batch of uint8 images (C10+ augmentation)."""
    n, _, h, w = x_uint8.shape
    device = x_uint8.device
    if order == "official":
        x = torch.nn.functional.pad(normalize(x_uint8), (pad, pad, pad, pad))
    elif order == "bamos":
        x = normalize(torch.nn.functional.pad(x_uint8, (pad, pad, pad, pad)))
    else:
        raise ValueError("augment order: expected one of %s, got %r" % (", ".join(ORDERS), order))
    # One draw for offsets and flips, in a fixed order, from the run's generator.
    draws = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    x = random_crop(x, h, draws[0], draws[1])
    return torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
