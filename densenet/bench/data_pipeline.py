"""Data pipeline throughput: ours (whole-batch augmentation of the device-resident uint8 set,
densenet/augment.py) against the usual torchvision baseline at equal augmentation.

The baseline is torchvision's own CIFAR10 dataset code (``__getitem__``: array -> PIL image ->
transforms) over the same uint8 images, with RandomCrop(32, padding=4), RandomHorizontalFlip,
ToTensor and Normalize, in a DataLoader with one worker per available core, shuffled, with the
same batch size as ours. Both sides produce normalized float batches and their labels on the
training device. The two sides run in alternating rounds (one pass over the images each), so
load from other processes hits both alike; each side's figure is its median round.
"""

import os
import time
from typing import Any, Dict, Optional

import torch

from ..augment import Normalizer
from ..feed import epoch_batches
from .timing import summarize, sync

__all__ = ["available_cores", "ours_epoch", "bench_data"]


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ours_epoch(
    x: torch.Tensor,
    y: torch.Tensor,
    normalize: Normalizer,
    batch_size: int,
    generator: torch.Generator,
    order: str,
) -> float:
    """One epoch of the training loop's own batches (feed.py); returns seconds."""
    sync(x.device)
    t0 = time.perf_counter()
    for _ in epoch_batches(x, y, batch_size, normalize, generator, True, order):
        pass
    sync(x.device)
    return time.perf_counter() - t0


def torchvision_loader(x_uint8, y, mean, std, batch_size, workers, device):
    """The baseline DataLoader, or raise ImportError when torchvision is not installed."""
    import torchvision
    import torchvision.transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize([m / 255.0 for m in mean], [s / 255.0 for s in std]),
        ]
    )
    # torchvision's CIFAR10 class without its file loading: its __getitem__ is the baseline.
    ds = torchvision.datasets.CIFAR10.__new__(torchvision.datasets.CIFAR10)
    ds.data = x_uint8.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as the pickles hold it
    ds.targets = [int(t) for t in y]
    ds.transform, ds.target_transform = transform, None
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=False,
    )


def torchvision_epoch(loader, device):
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb.to(device, non_blocking=True)
        yb.to(device, non_blocking=True)
    sync(device)
    return time.perf_counter() - t0


def bench_data(
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    mean: Any,
    std: Any,
    device: torch.device,
    batch_size: int,
    rounds: int,
    order: str = "official",
    seed: int = 0,
    workers: Optional[int] = None,
) -> Dict[str, Any]:
    """Both sides' img/s (median of ``rounds`` alternating passes over ``x_uint8``).

    Returns {"ours": {...}, "torchvision": {...}}; a side that could not run has img_s None
    and a reason."""
    workers = available_cores() if workers is None else workers
    n = int(x_uint8.shape[0])
    x_dev, y_dev = x_uint8.to(device), y.to(device)
    normalize = Normalizer(mean, std, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    ours, tv = [], []
    try:
        loader = torchvision_loader(x_uint8, y, mean, std, batch_size, workers, device)
        tv_reason = None
    except ImportError as exc:
        loader, tv_reason = None, "torchvision is not importable here (%s)" % exc
    # Untimed first use of each side: lazy initialisation for ours, worker start for the
    # baseline (its persistent workers then serve every timed round).
    ours_epoch(x_dev, y_dev, normalize, batch_size, gen, order)
    if loader is not None:
        for i, _ in enumerate(loader):
            if i >= 2 * workers:
                break
    for _ in range(rounds):
        ours.append(n / ours_epoch(x_dev, y_dev, normalize, batch_size, gen, order))
        if loader is not None:
            tv.append(n / torchvision_epoch(loader, device))
    del loader  # stops the persistent workers
    out = {
        "ours": {
            "img_s": summarize(ours)["median"],
            "rounds_img_s": ours,
            "order": order,
            "what": "feed.py (augment.py on whole batches) from the %s-resident uint8 tensor"
            % device.type,
        },
        "torchvision": {
            "img_s": summarize(tv)["median"],
            "rounds_img_s": tv,
            "reason": tv_reason,
            "num_workers": workers,
            "what": "torchvision CIFAR10.__getitem__ + RandomCrop(32, padding=4), "
            "RandomHorizontalFlip, ToTensor, Normalize; DataLoader with "
            "shuffle, persistent workers, pin_memory on CUDA",
        },
        "images": n,
        "batch_size": batch_size,
        "rounds": rounds,
    }
    return out
