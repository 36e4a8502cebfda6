"""The options of `python -m densenet bench` (and of its --probe mode), and the check of the
comma-separated name lists the parser cannot check by itself."""

import argparse
from typing import Optional

from .. import data
from ..models import MODEL_NAMES
from ..options import add_cpu_malloc, add_overlap, non_negative_int, out_file, positive_int
from ..recipe import OPTIMIZERS, values

__all__ = ["add_arguments", "names_problem"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The bench options (numerics flags are added by the CLI)."""
    p.add_argument("--out", required=True, type=out_file, help="JSON file (or folder) to write")
    p.add_argument("--model", default="densenet-bc100-k12", choices=MODEL_NAMES)
    p.add_argument(
        "--models", default=None, help="--probe: comma-separated model names (default: --model)"
    )
    p.add_argument("--batch-size", type=positive_int, default=values()["batch_size"])
    p.add_argument(
        "--steps", type=positive_int, default=20, help="timed steps per runner (after warmup)"
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=4,
        help="the timed steps are split into this many interleaved rounds",
    )
    p.add_argument(
        "--warmup",
        type=positive_int,
        default=None,
        help="untimed steps per runner (default: 2 on CPU, 6 on CUDA, where the "
        "CUDA-graph step needs 3 eager steps and a capture first)",
    )
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument(
        "--optimizers",
        default=None,
        help="--probe: comma-separated optimizers (default: --optimizer)",
    )
    p.add_argument(
        "--dataset",
        choices=data.DATASETS,
        default="synthetic",
        help="images for the data pipeline and the step batches",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--data-images", type=positive_int, default=10000, help="images per data-pipeline round"
    )
    p.add_argument("--data-rounds", type=positive_int, default=3)
    p.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="baseline DataLoader workers (default: the cores available)",
    )
    p.add_argument("--augment-order", choices=("official", "bamos"), default="official")
    p.add_argument(
        "--profile",
        choices=("on", "off"),
        default="on",
        help="profile one eager step and record the top kernels/ops",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="write a cost probe (per-model step, eval, checkpoint times) instead",
    )
    p.add_argument(
        "--fast",
        choices=("auto", "on", "off"),
        default="auto",
        help="--probe: the step the cells will use (auto: on for CUDA)",
    )
    p.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=None,
        help="--probe: eval batch (default as train: 500 on CUDA, --batch-size on CPU)",
    )
    p.add_argument("--env-id", default=None, help="--probe: the manifest env id, recorded")
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=None,
        help="torch intra-op threads (default, or 0: torch's choice); on a shared, "
        "oversubscribed CPU one thread can beat several by far",
    )
    p.add_argument(
        "--compile",
        choices=("on", "off"),
        default="off",
        help="also time the fast step of a torch.compile'd model, and check its gradients "
        "against float64 (densenet/compiled.py)",
    )
    p.add_argument(
        "--precision",
        choices=("on", "off"),
        default="on",
        help="with --compile on: the gradient check against float64 (two more compiles, "
        "minutes on a cold cache; it does not depend on TF32, which float64 never uses)",
    )
    p.add_argument(
        "--feed",
        choices=("on", "off"),
        default="on",
        help="also time the fast step with the training loop's feeding (index + augment, "
        "densenet/feed.py) in front of it: one more runner (its memory too)",
    )
    add_overlap(p)
    add_cpu_malloc(p)
    p.add_argument("--image-ref", default=None)


def names_problem(args: argparse.Namespace) -> Optional[str]:
    """A bad name in --models/--optimizers (one line, for the parser's exit 2), or None."""
    for what, text, allowed in (
        ("models", args.models, MODEL_NAMES),
        ("optimizers", args.optimizers, OPTIMIZERS),
    ):
        bad = [n for n in (text.split(",") if text is not None else []) if n not in allowed]
        if bad:
            return "argument --%s: invalid choice %r (choose from %s)" % (
                what,
                bad[0],
                ", ".join(sorted(allowed)),
            )
    return None
