"""The training loop's batches: one epoch of the uint8 set held on the device, shuffled by a
permutation from the epoch's generator, each batch indexed and augmented (or only normalized)
as a whole.

train.py feeds its step from here, and `bench` times the same code in front of the same step
(its "fast-fed" runner against "fast" on prepared batches), so that "augmentation is never
visible in the step time" is a ratio measured in one run, not a sum over two processes.
"""

from typing import Callable, Iterator, Tuple

import torch

from .augment import augment


def epoch_batches(
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    augment_on: bool,
    order: str,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) for one epoch: the permutation first, then per batch the
    augmentation draws, all from `generator` in that order, so an epoch is fixed by its seed.
    The last batch is partial when the set does not divide by the batch size."""
    n = y.shape[0]
    perm = torch.randperm(n, generator=generator, device=y.device)
    for i in range(0, n, batch_size):
        idx = perm[i : i + batch_size]
        xb = x_uint8[idx]
        yield (augment(xb, normalize, generator, order) if augment_on else normalize(xb)), y[idx]
