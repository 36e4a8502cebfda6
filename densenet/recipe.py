"""The training recipes: every hyperparameter of a cell and the study protocols, in one place.

A recipe is one implementation's training values, each with the line of code it reproduces
(`repo@commit:path:line`, SOURCES gives the full commits); RECIPES names them and
docs/recipes.md renders the same table. `lua` (the default) is the authors' Lua Torch code, the
code behind Table 2 of Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017);
`bamos` is bamos/densenet.pytorch, `chainer` t-hanya/chainer-DenseNet. The functions below
(resolve, lr_at, make_optimizer, normalization, ...) read only this table, so nothing else in
densenet/ holds a hyperparameter; any single command-line option overrides its recipe value.

The stem of `lua`: the plain DenseNets of Table 2 were trained with the August 2016 code, whose
stem has 16 channels (its parameter counts 1.0M / 7.0M / 27.2M are the README's); the BC code
of November 2016 and the code today build 2k. `lua` therefore takes stem `paper` (16 for plain
DenseNets, 2k for DenseNet-BC); `--stem lua` builds the current code's 2k for every model.
"""

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch

__all__ = [
    "PROTOCOLS",
    "SOURCES",
    "RECIPES",
    "RECIPE_KEYS",
    "DEFAULT_RECIPE",
    "OPTIMIZERS",
    "CHOICES",
    "NORMS",
    "LR_SCHEDULES",
    "ChainerMomentum",
    "values",
    "value",
    "source",
    "protocol_sizes",
    "base_lr",
    "resolve",
    "lr_at",
    "make_optimizer",
    "normalization",
    "default_eval_batch",
    "BATCH_MEAN_EVAL",
    "eval_batch_mean",
    "STREAM_BATCHES",
    "batches_stream",
]

# Study sizes, not part of a recipe: name -> epochs, training and test images (None = the full
# split). Every protocol trains with its recipe's batch size and lr schedule.
PROTOCOLS = {
    "smoke": {"epochs": 3, "n_train": 5000, "n_test": 1000},
    "short": {"epochs": 30, "n_train": None, "n_test": None},
    "paper": {"epochs": 300, "n_train": None, "n_test": None},
}

# The code each citation points into: repository@short commit -> the full commit.
SOURCES = {
    "liuzhuang13/DenseNet@e3d24fb": "e3d24fb44997875f6eddc90dfd605e028d052bad",
    "liuzhuang13/DenseNet@cbb6bff": "cbb6bff0b4bc8a0eba1f89f60b721e1a264d2afd",
    "liuzhuang13/DenseNet@e6c89f2": "e6c89f2af885184b90272024246a53b155840b11",
    "torch/optim@a5ceed7": "a5ceed7c21a56d32a36706823e8436741b230d1c",
    "torch/nn@8726825": "872682558c48ee661ebff693aa5a41fcdefa7873",
    "soumith/cudnn.torch@008c49d": "008c49de3982119378576fa4244e472a50fd9ebe",
    "bamos/densenet.pytorch@d1cd5e1": "d1cd5e1957975628286e516512c6d1c14430f810",
    "pytorch/vision@0074868": "007486880d4859c383e43ae3150c5043783b23ad",
    "t-hanya/chainer-DenseNet@727df1a": "727df1ade3825f5535fef9d559ff4f168da28be1",
    "chainer/chainer@v3.0.0": "396bc3ee8a781463734c7dfac4e892ee6f578dc5",
}
_DN = "liuzhuang13/DenseNet@e3d24fb:"
_DN16 = "liuzhuang13/DenseNet@cbb6bff:"
_BAMOS = "bamos/densenet.pytorch@d1cd5e1:"
_CH = "t-hanya/chainer-DenseNet@727df1a:"
_CHAINER = "chainer/chainer@v3.0.0:"

# The keys of a recipe, in the order the table lists them. Each is recorded in summary.json /
# env.json config with its resolved value, and each has a `densenet train` option.
RECIPE_KEYS = (
    "batch_size",
    "lr",
    "momentum",
    "nesterov",
    "momentum_form",
    "weight_decay",
    "lr_schedule",
    "norm",
    "augment_order",
    "init",
    "bias",
    "stem",
    "bn_eps",
    "dropout",
)

# key -> (value, source). `dropout` is (with augmentation, without).
LUA = {
    "batch_size": (64, _DN + "README.md:84 (th main.lua ... -batchSize 64 -nEpochs 300)"),
    "lr": (0.1, _DN + "opts.lua:41 (-LR 0.1)"),
    "momentum": (0.9, _DN + "opts.lua:42 (-momentum 0.9); dampening 0: train.lua:27"),
    "nesterov": ("on", _DN + "train.lua:26 (nesterov = true)"),
    "momentum_form": (
        "torch",
        "torch/optim@a5ceed7:sgd.lua:62,65,82 (state.dfdx:mul(mom):add(1-damp, dfdx); "
        "dfdx:add(mom, state.dfdx); x:add(-clr, dfdx)): torch.optim.SGD's arithmetic",
    ),
    "weight_decay": (
        1e-4,
        _DN + "opts.lua:43 (-weightDecay 1e-4); on every parameter: "
        "torch/optim@a5ceed7:sgd.lua:47-48 (dfdx:add(wd, x))",
    ),
    "lr_schedule": (
        "lua",
        _DN + "train.lua:194 (decay = epoch >= 0.75*nEpochs and 2 or epoch >= 0.5*nEpochs "
        "and 1 or 0); 2016: " + _DN16 + "README.md:41 (epoch >= 225 and 2 or epoch >= 150)",
    ),
    "norm": ("lua", _DN + "datasets/cifar10.lua:39-40 (mean 125.3, 123.0, 113.9; std 63.0, ...)"),
    "augment_order": (
        "official",
        _DN + "datasets/cifar10.lua:45-49 (ColorNormalize, HorizontalFlip, RandomCrop(32, 4)); "
        "zero pad after normalising: datasets/transforms.lua:67-71",
    ),
    "init": (
        "lua",
        _DN + "models/densenet.lua:140-141 (n = kW*kH*nOutputPlane; normal(0, sqrt(2/n))); "
        "Linear U(+-1/sqrt(in)): torch/nn@8726825:Linear.lua:25,39; Linear bias 0: "
        "models/densenet.lua:160-161",
    ),
    "bias": ("off", _DN + "models/densenet.lua:142-144 (cudnn.version >= 4000: v.bias = nil)"),
    "stem": (
        "paper",
        _DN16 + "densenet.lua:21 (nChannels = 16: the plain rows of Table 2); BC: "
        "liuzhuang13/DenseNet@e6c89f2:densenet.lua:13 (nChannels = 2 * growthRate)",
    ),
    "bn_eps": (1e-5, "soumith/cudnn.torch@008c49d:BatchNormalization.lua:17 (eps or 1e-5)"),
    "dropout": (
        (0.0, 0.2),
        _DN + "README.md:102 (drop rate 0.2 after each convolution but the first, for the "
        "datasets without augmentation); opts.lua:60 (-dropRate 0)",
    ),
}

BAMOS = {
    "batch_size": (64, _BAMOS + "train.py:31 (--batchSz default 64)"),
    "lr": (0.1, _BAMOS + "train.py:85 (optim.SGD(net.parameters(), lr=1e-1,)"),
    "momentum": (0.9, _BAMOS + "train.py:86 (momentum=0.9, weight_decay=1e-4)"),
    "nesterov": ("off", _BAMOS + "train.py:85-86 (nesterov not passed: torch's default False)"),
    "momentum_form": ("torch", _BAMOS + "train.py:85 (torch.optim.SGD)"),
    "weight_decay": (1e-4, _BAMOS + "train.py:86 (weight_decay=1e-4, on net.parameters())"),
    "lr_schedule": (
        "lua",
        _BAMOS + "train.py:157-160 (epoch < 150: 1e-1; == 150: 1e-2; == 225: 1e-3), "
        "1-based epochs: train.py:96",
    ),
    "norm": ("bamos", _BAMOS + "train.py:52-53 (normMean = [0.49139968, ...]; normStd = ...)"),
    "augment_order": (
        "bamos",
        _BAMOS + "train.py:56-61 (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, "
        "normalise); black padding: pytorch/vision@0074868:torchvision/transforms.py:202",
    ),
    "init": (
        "lua",
        _BAMOS + "densenet.py:91-92 (n = k*k*out_channels; normal_(0, sqrt(2/n))); Linear: "
        "torch's default, bias 0: densenet.py:96-97",
    ),
    "bias": ("off", _BAMOS + "densenet.py:24,27,52,70 (bias=False)"),
    "stem": ("lua", _BAMOS + "densenet.py:68 (nChannels = 2*growthRate)"),
    "bn_eps": (
        1e-5,
        "torch's nn.BatchNorm2d default (torch 2.x nn/modules/batchnorm.py:41 eps=1e-5; "
        + _BAMOS
        + "densenet.py builds nn.BatchNorm2d without eps; the 2017 torch is unverified)",
    ),
    "dropout": ((0.0, 0.0), _BAMOS + "densenet.py (no dropout anywhere in the model)"),
}

CHAINER = {
    "batch_size": (64, _CH + "code/train.py:35 (--batchsize default 64)"),
    "lr": (0.1, _CH + "code/train.py:75 (NesterovAG(lr=0.1, momentum=0.9))"),
    "momentum": (0.9, _CH + "code/train.py:75 (NesterovAG(lr=0.1, momentum=0.9))"),
    "nesterov": ("on", _CH + "code/train.py:75 (chainer.optimizers.NesterovAG)"),
    "momentum_form": (
        "chainer",
        _CHAINER + "chainer/optimizers/nesterov_ag.py:45-48 (v *= momentum; v -= lr * grad; "
        "param += momentum * momentum * v; param -= (1 + momentum) * lr * grad)",
    ),
    "weight_decay": (
        1e-4,
        _CH
        + "code/train.py:77 (WeightDecay(1e-4) hook on every parameter); "
        + _CHAINER
        + "chainer/optimizer.py:633 (g += rate * p)",
    ),
    "lr_schedule": (
        "chainer",
        _CH + "code/train.py:96-99 (lr_drop_epochs = [int(epoch * 0.5), int(epoch * 0.75)]); "
        "code/extension.py:18 (lr *= drop_ratio), after that epoch",
    ),
    "norm": ("lua", _CH + "code/dataset.py:10-11 (C10_MEAN 125.3, 123.0, 113.9; C10_STD ...)"),
    "augment_order": (
        "official",
        _CH + "code/dataset.py:60-62 (normalise, then augment); zero pad after normalising: "
        "code/dataset.py:29-31",
    ),
    "init": (
        "chainer",
        _CH + "code/model.py:20-22 (HeNormal: normal(0, sqrt(2/fan_in))); stem and Linear: "
        "LeCunNormal normal(0, sqrt(1/fan_in)): "
        + _CHAINER
        + "chainer/initializers/__init__.py:50-52; BN running variance 0: "
        "chainer/links/normalization/batch_normalization.py:71 (avg_var = numpy.zeros(size))",
    ),
    "bias": (
        "on",
        _CHAINER + "chainer/links/connection/convolution_2d.py:102-103,131 (nobias=False, "
        "initial_bias 0)",
    ),
    "stem": ("paper", _CH + "code/train.py:37-40 (DenseNet(L, k, 16, ...): 16 channels)"),
    "bn_eps": (
        2e-5,
        _CHAINER + "chainer/links/normalization/batch_normalization.py:65 (eps=2e-5)",
    ),
    "dropout": ((0.2, 0.2), _CH + "code/train.py:41 (--dropout default 0.2, any dataset)"),
}

RECIPES = {"lua": LUA, "bamos": BAMOS, "chainer": CHAINER}  # name -> key -> (value, source)
DEFAULT_RECIPE = "lua"

# Not in any recipe: the learning rates of the optimizers none of the implementations uses
# (Adam's is torch's default), and the evaluation batch: 500 on CUDA; a CPU evaluates fastest in
# the training batch (at 500 its activations exceed glibc's mmap limit: fresh pages on every
# call, 3x slower per image; with --cpu-malloc reuse they fragment the heap, 3x the training
# step's memory).
OTHER_LR = {"adam": 1e-3, "rmsprop": 1e-4}
# The recipes whose training batches run across epoch boundaries as Chainer's iterator's do
# (densenet/feed.py stream_batches): every batch full, a batch that reaches the end of the
# epoch's permutation filled from the next one's, an epoch ended by that batch (Chainer's
# `epoch` counter, at which the Evaluator and the lr drops fire). The lr schedule applies per
# such epoch; the others shuffle per epoch with a partial last batch. name -> source.
STREAM_BATCHES = {
    "chainer": _CH
    + "code/train.py:58 (MultiprocessIterator(train, args.batchsize)); "
    + _CHAINER
    + "chainer/iterators/multiprocess_iterator.py:386-391 (indices = order[pos:n]; order = "
    "numpy.random.permutation(n); numpy.concatenate((indices, order[:new_pos])); epoch += 1); "
    "lr drops: chainer/training/triggers/manual_schedule_trigger.py:55 (previous_epoch_detail "
    "< p <= epoch_detail)",
}
# The recipes whose test loss and error are the unweighted mean over test batches of the
# training batch size (a short last batch counts as a full one), as their code reports them; the
# others' are per image. name -> source.
BATCH_MEAN_EVAL = {
    "chainer": _CH
    + "code/train.py:59-61 (MultiprocessIterator(test, args.batchsize, repeat=False, "
    "shuffle=False)); "
    + _CHAINER
    + "chainer/training/extensions/evaluator.py:168,182,184 (summary = DictSummary(); "
    "summary.add(observation); return summary.compute_mean())",
}
OPTIMIZERS = ("adam", "rmsprop", "sgd")  # the --optimizer choices
EVAL_BATCH_CUDA = 500

# Per-channel mean and std on the 0-255 scale, per normalisation and dataset. bamos' are its
# 0-1 values x 255 (bamos/densenet.pytorch@d1cd5e1:train.py:52-53); it trains CIFAR-10 only.
# The generated set is normalised with its own statistics under either name.
NORMS = {
    "lua": {
        "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
        "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
    },
    "bamos": {
        "cifar10": (
            tuple(255.0 * v for v in (0.49139968, 0.48215827, 0.44653124)),
            tuple(255.0 * v for v in (0.24703233, 0.24348505, 0.26158768)),
        ),
    },
}
# The lr rules (1-based epochs): lua divides by 10 from the epoch >= 50% of training and by 100
# from the epoch >= 75% (300 epochs: 150 and 225 run at the lower rate); chainer drops after
# epoch int(50%) and int(75%) (300 epochs: 151 and 226 are the first at the lower rate).
LR_SCHEDULES = ("lua", "chainer")
# The values each key accepts (the options' choices).
CHOICES = {
    "nesterov": ("on", "off"),
    "momentum_form": ("torch", "chainer"),
    "lr_schedule": LR_SCHEDULES,
    "norm": tuple(NORMS),
    "augment_order": ("official", "bamos"),
    "init": ("lua", "chainer"),
    "bias": ("on", "off"),
    "stem": ("paper", "lua"),
}


def values(name: Optional[str] = None) -> Dict[str, Any]:
    """{key: value} of recipe `name` (default: DEFAULT_RECIPE)."""
    name = name or DEFAULT_RECIPE
    if name not in RECIPES:
        raise ValueError("recipe: expected one of %s, got %r" % (", ".join(RECIPES), name))
    return {k: v for k, (v, _) in RECIPES[name].items()}


def value(key: str, name: Optional[str] = None) -> Any:
    return values(name)[key]


def source(key: str, name: Optional[str] = None) -> str:
    """Where recipe `name`'s value of `key` comes from."""
    return RECIPES[name or DEFAULT_RECIPE][key][1]


def protocol_sizes(name: str) -> Tuple[int, Optional[int], Optional[int]]:
    """(epochs, n_train, n_test) of protocol `name`."""
    p = PROTOCOLS[name]
    return p["epochs"], p["n_train"], p["n_test"]


def base_lr(optimizer: str, recipe: Optional[str] = None) -> float:
    """The recipe's learning rate for `optimizer` before any drop."""
    return value("lr", recipe) if optimizer == "sgd" else OTHER_LR[optimizer]


def resolve(args: Mapping[str, Any], recipe: Optional[str] = None) -> Dict[str, Any]:
    """Fill the protocol's sizes and the recipe's values into a plain config dict: every key
    the config leaves None (or lacks) takes the recipe's value. The recipe is cfg["recipe"],
    else `recipe`, else DEFAULT_RECIPE; the config records its name."""
    cfg = dict(args)
    cfg["recipe"] = cfg.get("recipe") or recipe or DEFAULT_RECIPE
    r = values(cfg["recipe"])
    epochs, n_train, n_test = protocol_sizes(cfg["protocol"])
    for key, default in (("epochs", epochs), ("n_train", n_train), ("n_test", n_test)):
        if cfg.get(key) is None:
            cfg[key] = default
    for key in RECIPE_KEYS:
        if cfg.get(key) is not None:
            continue
        if key == "lr":
            cfg[key] = base_lr(cfg.get("optimizer", "sgd"), cfg["recipe"])
        elif key == "dropout":
            cfg[key] = r["dropout"][0 if cfg.get("augment", "on") == "on" else 1]
        else:
            cfg[key] = r[key]
    return cfg


def lr_at(epoch: int, epochs: int, base: float, schedule: Optional[str] = None) -> float:
    """Learning rate for 1-indexed `epoch` of `epochs` under lr schedule `schedule` (default:
    the default recipe's). lua (300 epochs): 1-149 at base, 150-224 /10, 225-300 /100; chainer:
    1-150, 151-225, 226-300."""
    schedule = schedule or value("lr_schedule")
    if schedule == "lua":
        drops = sum(epoch >= epochs * f for f in (0.5, 0.75))
    elif schedule == "chainer":
        drops = sum(epoch > int(epochs * f) for f in (0.5, 0.75))
    else:
        raise ValueError(
            "lr schedule: expected one of %s, got %r" % (", ".join(LR_SCHEDULES), schedule)
        )
    return base / 10**drops if drops else base


class ChainerMomentum(torch.optim.Optimizer):
    """Chainer's momentum SGD, whose velocity holds lr x gradient (torch's holds gradients), with
    the weight decay added to the gradient first as chainer's WeightDecay hook does:

        g = grad + weight_decay * p;  v = momentum * v - lr * g
        nesterov (NesterovAG):  p += momentum**2 * v - (1 + momentum) * lr * g
        plain (MomentumSGD):    p += v

    v starts at zero. torch.optim.SGD cannot express it: its first Nesterov step is -1.9 lr g
    against chainer's -2.71 lr g, and after an lr drop chainer's velocity keeps the old rate's
    scale."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, nesterov=True):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("ChainerMomentum: expected lr > 0, momentum >= 0, weight_decay >= 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(m).add_(g, alpha=-lr)
                if group["nesterov"]:
                    p.add_(v, alpha=m * m).add_(g, alpha=-(1 + m) * lr)
                else:
                    p.add_(v)
        return loss


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    cfg: Optional[Mapping[str, Any]] = None,
) -> torch.optim.Optimizer:
    """Optimizer `name` over `params` at learning rate `lr`, with the momentum, Nesterov,
    momentum form and weight decay of `cfg` (a resolved config; default: the default recipe's
    values). Adam and RMSprop take only the weight decay."""
    c = dict(values(), **{k: v for k, v in (cfg or {}).items() if v is not None})
    wd = c["weight_decay"]
    if name == "sgd":
        nesterov = c["nesterov"] == "on"
        if c["momentum_form"] == "chainer":
            return ChainerMomentum(
                params, lr=lr, momentum=c["momentum"], weight_decay=wd, nesterov=nesterov
            )
        return torch.optim.SGD(
            params, lr=lr, momentum=c["momentum"], dampening=0, weight_decay=wd, nesterov=nesterov
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError("optimizer: expected one of %s, got %r" % (", ".join(OPTIMIZERS), name))


def normalization(
    norm: str, dataset: str, own: Optional[Tuple[Sequence[float], Sequence[float]]] = None
) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) on the 0-255 scale of normalisation `norm` for `dataset`; the generated set
    (no published constants) uses `own`, its own statistics. ValueError (one line) for a
    dataset the normalisation has no constants for."""
    if dataset == "synthetic" and own is not None:
        return tuple(own[0]), tuple(own[1])
    table = NORMS.get(norm)
    if table is None:
        raise ValueError("norm: expected one of %s, got %r" % (", ".join(NORMS), norm))
    if dataset not in table:
        raise ValueError(
            "norm %s: has constants for %s only, not %s; use --norm lua"
            % (norm, ", ".join(table), dataset)
        )
    return table[dataset]


def norm_problem(norm: str, dataset: str) -> Optional[str]:
    """Why normalisation `norm` cannot serve `dataset` (one line), or None."""
    if dataset == "synthetic":
        return None
    try:
        normalization(norm, dataset)
    except ValueError as exc:
        return str(exc)
    return None


def default_eval_batch(device: torch.device, batch_size: int, recipe: Optional[str] = None) -> int:
    """--eval-batch-size when not given (the cost probe uses it too): see EVAL_BATCH_CUDA; the
    training batch for a recipe of BATCH_MEAN_EVAL, whose test error depends on it."""
    if eval_batch_mean(recipe):
        return batch_size
    return EVAL_BATCH_CUDA if device.type == "cuda" else batch_size


def batches_stream(recipe: Optional[str]) -> bool:
    """Whether recipe `recipe` trains on batches across epoch boundaries (STREAM_BATCHES)."""
    return (recipe or DEFAULT_RECIPE) in STREAM_BATCHES


def eval_batch_mean(recipe: Optional[str]) -> bool:
    """Whether recipe `recipe` averages its test loss and error over batches (BATCH_MEAN_EVAL)."""
    return (recipe or DEFAULT_RECIPE) in BATCH_MEAN_EVAL


def text(key: str, v: Any) -> str:
    """A recipe value as docs/recipes.md writes it."""
    if key == "dropout":
        return "%g with augmentation, %g without" % v
    return "%g" % v if isinstance(v, float) else str(v)


def markdown_table() -> str:
    """The recipe table as docs/recipes.md renders it: one row per key, per recipe its value and
    its source (tests/test_recipes.py checks the document holds exactly this)."""
    names = list(RECIPES)
    lines = ["| key | " + " | ".join("`%s`" % n for n in names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for key in RECIPE_KEYS:
        cells = [
            "**%s**<br>%s" % (text(key, RECIPES[n][key][0]), RECIPES[n][key][1].replace("|", "\\|"))
            for n in names
        ]
        lines.append("| `%s` | %s |" % (key, " | ".join(cells)))
    return "\n".join(lines) + "\n"
