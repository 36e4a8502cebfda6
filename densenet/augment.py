"""Whole-batch augmentation on the training device: normalize, zero-pad 4, random 32x32 crop,
random horizontal flip, with no per-image Python.

Order matters for the padded border. The official Lua code normalizes first and pads with
zeros afterwards, so padded pixels equal the channel mean (``order="official"``); bamos'
torchvision pipeline pads raw pixels with black and normalizes after (``order="bamos"``).
All randomness comes from the generator passed in, so a run is reproducible from its seed.
"""

from typing import Callable

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


def random_crop(
    padded: torch.Tensor, size: int, offsets_y: torch.Tensor, offsets_x: torch.Tensor
) -> torch.Tensor:
    """Crop size x size windows at per-image offsets from an explicitly padded batch, with two
    gathers: the plain reference for augment(), which takes the same pixels in one gather."""
    n, c, h, w = padded.shape
    ar = torch.arange(size, device=padded.device)
    rows = (offsets_y.view(n, 1) + ar.view(1, size)).view(n, 1, size, 1).expand(n, c, size, w)
    out = torch.gather(padded, 2, rows)
    cols = (offsets_x.view(n, 1) + ar.view(1, size)).view(n, 1, 1, size).expand(n, c, size, size)
    return torch.gather(out, 3, cols)


def augment(
    x_uint8: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    order: str = "official",
    pad: int = PAD,
) -> torch.Tensor:
    """Normalize, pad, crop and flip one batch of uint8 images (C10+ augmentation).

    Computed as: one gather of the source pixels from the unpadded uint8 batch (the crop
    offset and the flip folded into one index per output pixel), then normalize, then zero the
    pixels that fall into the padding. Bit for bit what pad-crop-flip on the normalized (or,
    for bamos, raw) batch gives (tests/test_augment.py), in about 60% of the time on a CPU:
    one byte-sized gather instead of two float gathers, a pad and a flip.
    """
    if order not in ORDERS:
        raise ValueError("augment order: expected one of %s, got %r" % (", ".join(ORDERS), order))
    n, c, h, w = x_uint8.shape
    device = x_uint8.device
    # One draw for offsets and flips, in a fixed order, from the run's generator.
    draws = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    # Output pixel (i, j) is padded pixel (oy + i, ox + j), or (oy + i, ox + w - 1 - j) when
    # flipped; minus pad, that is its place in the unpadded image, outside it when padding.
    ar_h, ar_w = torch.arange(h, device=device), torch.arange(w, device=device)
    rows = draws[0].view(n, 1) + ar_h.view(1, h) - pad
    cols = torch.where(flips.view(n, 1), (w - 1 - ar_w).view(1, w), ar_w.view(1, w))
    cols = draws[1].view(n, 1) + cols - pad
    in_rows = ((rows >= 0) & (rows < h)).view(n, 1, h, 1)
    inside = in_rows & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
    pix = rows.clamp(0, h - 1).view(n, h, 1) * w + cols.clamp(0, w - 1).view(n, 1, w)
    src = x_uint8.reshape(n, c, h * w).gather(2, pix.view(n, 1, h * w).expand(n, c, h * w))
    src = src.view(n, c, h, w)
    if order == "official":  # normalize, then pad with zeros (= the channel mean)
        return torch.where(inside, normalize(src), torch.zeros((), device=device))
    return normalize(src * inside)  # bamos: pad raw pixels with black, then normalize
