"""Time densenet.augment.augment against a plain pad-crop-flip reference implementation
(tests/test_augment.py), interleaved round by round on one batch, one torch thread.

    python scripts/augment_bench.py [--rounds 30] [--calls 100] [--batch 64]

CPU only (the reference draws its random numbers on the CPU). Prints the median, min and max
time per batch of each; the outputs are bit-identical (the test checks it), so only time
differs. GPU augmentation throughput is part of `python -m densenet bench`.
"""

import argparse
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from test_augment import pad_crop_flip  # noqa: E402

from densenet.augment import Normalizer, augment  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=100, help="calls per round")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer((125.3, 123.0, 113.9), (63.0, 62.1, 66.7), torch.device("cpu"))
    times = {"augment": [], "pad_crop_flip": []}
    for rnd in range(args.rounds):
        for fn in (augment, pad_crop_flip):
            gen = torch.Generator().manual_seed(rnd)
            fn(x, norm, gen, "official")
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn(x, norm, gen, "official")
            times[fn.__name__].append(1000.0 * (time.perf_counter() - t0) / args.calls)
    for name, v in times.items():
        v = sorted(v)
        mid = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
        print(
            "%-14s median %.3f ms per batch of %d (min %.3f, max %.3f; %d rounds of %d)"
            % (name, mid, args.batch, v[0], v[-1], args.rounds, args.calls)
        )


if __name__ == "__main__":
    main()
