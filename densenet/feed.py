"""The training loop's batches: one epoch of the uint8 set held on the device, shuffled by a
permutation from the epoch's generator, each batch indexed and augmented (or only normalized)
as a whole.

train.py feeds its step from here, and `bench` times the same code in front of the same step
(its "fast-fed" runner against "fast" on prepared batches), so that "augmentation is never
visible in the step time" is a ratio measured in one run, not a sum over two processes.

`stream_batches` feeds a recipe of recipe.STREAM_BATCHES instead: Chainer's iterator, whose
batches run across epoch boundaries (see its docstring).
"""

from typing import Callable, Iterator, Optional, Tuple

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


def stream_iterations(epoch: int, n: int, batch_size: int) -> Tuple[int, int]:
    """0-based [first, last) iterations of 1-based `epoch` when fixed batches of `batch_size`
    run through one permutation of the `n` images after another, as Chainer's SerialIterator
    and MultiprocessIterator do: an epoch ends with the iteration whose batch reaches the end
    of its permutation (Chainer's `epoch` counter ticks there, and so do triggers at integer
    epochs: the Evaluator's and ManualScheduleTrigger's lr drops). Iteration t holds images
    [t * batch_size, (t + 1) * batch_size) of the stream, so epoch e ends after iteration
    ceil(e * n / batch_size) (1-based)."""
    return -(-(epoch - 1) * n // batch_size), -(-epoch * n // batch_size)


def stream_batches(
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    augment_on: bool,
    order: str,
    epoch: int,
    next_generator: Optional[torch.Generator],
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) for 1-based `epoch` of Chainer's iterator (stream_iterations): a
    full batch every iteration; the epoch begins where the previous one's last batch left its
    permutation, and its own last batch is filled with the first images of the next epoch's
    permutation. The epoch's permutation is the first draw of `generator`, its augmentation
    draws follow; the next epoch's permutation is the first draw of `next_generator`, which
    must be seeded as the next epoch's `generator` will be (so it is recomputed, never stored)."""
    n = y.shape[0]
    if not 0 < batch_size <= n:
        raise ValueError(
            "batch size: expected 1 to %d (the training images), got %d" % (n, batch_size)
        )
    perm = torch.randperm(n, generator=generator, device=y.device)
    nxt = None
    first, last = stream_iterations(epoch, n, batch_size)
    for t in range(first, last):
        a = t * batch_size - (epoch - 1) * n
        b = a + batch_size
        if b <= n:
            idx = perm[a:b]
        else:
            if nxt is None:
                nxt = torch.randperm(n, generator=next_generator, device=y.device)
            idx = torch.cat((perm[a:], nxt[: b - n]))
        xb = x_uint8[idx]
        yield (augment(xb, normalize, generator, order) if augment_on else normalize(xb)), y[idx]
