"""The training recipe: every hyperparameter of a cell and the study protocols, in one place.

A recipe is a plain dict of values, each with the source it reproduces; RECIPES names them.
The functions below (defaults, learning-rate schedule, optimizer, eval batch) read only the
recipe table, so nothing else in densenet/ holds a hyperparameter. "paper" is the recipe of
Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017), Sec. 4.2 "Training".
Another recipe (another implementation's values) is a dict with the same keys in RECIPES; the
functions take its name as `recipe` (default: DEFAULT_RECIPE).
"""

from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch

__all__ = [
    "PROTOCOLS",
    "RECIPES",
    "DEFAULT_RECIPE",
    "OPTIMIZERS",
    "values",
    "protocol_sizes",
    "base_lr",
    "resolve",
    "lr_at",
    "make_optimizer",
    "default_eval_batch",
]

# Study sizes, not part of a recipe: name -> epochs, training and test images (None = the full
# split). Every protocol trains with its recipe's batch size and lr schedule.
PROTOCOLS = {
    "smoke": {"epochs": 3, "n_train": 5000, "n_test": 1000},
    "short": {"epochs": 30, "n_train": None, "n_test": None},
    "paper": {"epochs": 300, "n_train": None, "n_test": None},
}

PAPER = {
    # Sec. 4.2: "we train using batch size 64 for 300 and 40 epochs".
    "batch_size": 64,
    # Sec. 4.2: "The initial learning rate is set to 0.1". Adam and RMSprop are not in the
    # paper; their rates are the harness's choice (Adam's is torch's default).
    "base_lr": {"sgd": 0.1, "adam": 1e-3, "rmsprop": 1e-4},
    # Sec. 4.2: "divided by 10 at 50% and 75% of the total number of training epochs":
    # (fraction of training, divisor of the base rate after it), on 1-indexed epochs.
    "lr_drops": ((0.5, 10), (0.75, 100)),
    # Sec. 4.2: "a weight decay of 10^-4 and a Nesterov momentum of 0.9 without dampening",
    # the decay on all parameters. Adam and RMSprop (not in the paper) take the same decay.
    "optimizer": {
        "sgd": ("SGD", {"momentum": 0.9, "dampening": 0, "weight_decay": 1e-4, "nesterov": True}),
        "adam": ("Adam", {"weight_decay": 1e-4}),
        "rmsprop": ("RMSprop", {"weight_decay": 1e-4}),
    },
    # Sec. 4.2: "we add a dropout layer ... dropout rate to 0.2" for the three datasets without
    # data augmentation (C10, C100, SVHN); none with augmentation.
    "dropout": {"augment_on": 0.0, "augment_off": 0.2},
    # Not a training value: the evaluation batch. 500 on CUDA; a CPU evaluates fastest in the
    # training batch (at 500 its activations exceed glibc's mmap limit: fresh pages on every
    # call, 3x slower per image; with --cpu-malloc reuse they fragment the heap, 3x the
    # training step's memory).
    "eval_batch_cuda": 500,
}

RECIPES = {"paper": PAPER}  # name -> recipe
DEFAULT_RECIPE = "paper"
OPTIMIZERS = tuple(sorted(PAPER["base_lr"]))  # the --optimizer choices


def values(name: Optional[str] = None) -> Mapping[str, Any]:
    """The values of recipe `name` (default: DEFAULT_RECIPE)."""
    return RECIPES[name or DEFAULT_RECIPE]


def protocol_sizes(name: str) -> Tuple[int, Optional[int], Optional[int]]:
    """(epochs, n_train, n_test) of protocol `name`."""
    p = PROTOCOLS[name]
    return p["epochs"], p["n_train"], p["n_test"]


def base_lr(optimizer: str, recipe: Optional[str] = None) -> float:
    """The recipe's learning rate for `optimizer` before any drop."""
    return values(recipe)["base_lr"][optimizer]


def resolve(args: Mapping[str, Any], recipe: Optional[str] = None) -> Dict[str, Any]:
    """Fill protocol defaults and the recipe's derived values into a plain config dict."""
    r = values(recipe)
    cfg = dict(args)
    epochs, n_train, n_test = protocol_sizes(cfg["protocol"])
    for key, default in (
        ("epochs", epochs),
        ("n_train", n_train),
        ("n_test", n_test),
        ("batch_size", r["batch_size"]),
    ):
        if cfg.get(key) is None:
            cfg[key] = default
    if cfg.get("lr") is None:
        cfg["lr"] = r["base_lr"][cfg["optimizer"]]
    if cfg.get("dropout") is None:
        cfg["dropout"] = r["dropout"]["augment_on" if cfg["augment"] == "on" else "augment_off"]
    return cfg


def lr_at(epoch: int, epochs: int, base: float, recipe: Optional[str] = None) -> float:
    """Learning rate for 1-indexed ``epoch``: base, /10 after 50% and /100 after 75% of training
    (paper: epochs 1-150 at 0.1, 151-225 at 0.01, 226-300 at 0.001)."""
    divisor = 1
    for fraction, after in values(recipe)["lr_drops"]:
        if epoch <= epochs * fraction:
            break
        divisor = after
    return base if divisor == 1 else base / divisor


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, recipe: Optional[str] = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer `name` over `params` at learning rate `lr`."""
    table = values(recipe)["optimizer"]
    if name not in table:
        raise ValueError("optimizer: expected one of %s, got %r" % (", ".join(table), name))
    cls, kwargs = table[name]
    return getattr(torch.optim, cls)(params, lr=lr, **kwargs)


def default_eval_batch(device: torch.device, batch_size: int, recipe: Optional[str] = None) -> int:
    """--eval-batch-size when not given (the cost probe uses it too): see eval_batch_cuda."""
    return values(recipe)["eval_batch_cuda"] if device.type == "cuda" else batch_size
