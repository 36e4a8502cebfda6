"""The fixed batch of the gradient stage (also the batch of bench's --compile precision check)."""

from typing import Tuple

import torch

from ..augment import Normalizer
from ..data import NORMALIZATION, make_synthetic

__all__ = ["make_batch"]


def make_batch(n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """n real-looking 32x32 images (the generated `synthetic` set: smooth class patterns,
    shifted and noised) normalized with the CIFAR-10 constants, and their labels. Fixed: the
    same batch on every machine and for every --seed."""
    ds = make_synthetic(n, 1)
    mean, std = NORMALIZATION["cifar10"]
    x = Normalizer(mean, std, torch.device("cpu"))(ds.x_train)
    return x.to(device), ds.y_train.to(device)
