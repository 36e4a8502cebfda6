"""The named training recipes (densenet/recipe.py): every value of every recipe pinned as its
source has it, the model, optimizer, schedule and data each recipe builds, the command-line
overrides, what a cell records, the resume rule for checkpoints written before recipes, the
report's table and docs/recipes.md agreeing with the trainer's."""

import math
import os

import pandas as pd
import pytest
import torch
import torch.nn as nn
from conftest import REPO, densenet, read_json

from densenet import celldir, checkpoint, cli, data, recipe
from densenet.augment import Normalizer, augment
from densenet.models import build_model, count_params
from report import references

EPOCHS = (149, 150, 151, 224, 225, 226)
# lr at EPOCHS of 300: lua and bamos drop at the start of epochs 150 and 225, chainer after them.
LR = {
    "lua": [0.1, 0.01, 0.01, 0.01, 0.001, 0.001],
    "bamos": [0.1, 0.01, 0.01, 0.01, 0.001, 0.001],
    "chainer": [0.1, 0.1, 0.01, 0.01, 0.01, 0.001],
}
# Every value of every recipe except the schedule (above), as the sources have it.
PINNED = {
    "lua": dict(
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        nesterov="on",
        momentum_form="torch",
        weight_decay=1e-4,
        lr_schedule="lua",
        norm="lua",
        augment_order="official",
        init="lua",
        bias="off",
        stem="paper",
        bn_eps=1e-5,
        dropout=(0.0, 0.2),
    ),
    "bamos": dict(
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        nesterov="off",
        momentum_form="torch",
        weight_decay=1e-4,
        lr_schedule="lua",
        norm="bamos",
        augment_order="bamos",
        init="lua",
        bias="off",
        stem="lua",
        bn_eps=1e-5,
        dropout=(0.0, 0.0),
    ),
    "chainer": dict(
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        nesterov="on",
        momentum_form="chainer",
        weight_decay=1e-4,
        lr_schedule="chainer",
        norm="lua",
        augment_order="official",
        init="chainer",
        bias="on",
        stem="paper",
        bn_eps=2e-5,
        dropout=(0.2, 0.2),
    ),
}
BAMOS_MEAN = (0.49139968, 0.48215827, 0.44653124)  # bamos train.py:52-53, 0-1 scale
BAMOS_STD = (0.24703233, 0.24348505, 0.26158768)


def resolved(name, augment="on", protocol="paper", **given):
    return recipe.resolve(
        dict(protocol=protocol, optimizer="sgd", augment=augment, recipe=name, **given)
    )


def test_every_value_of_every_recipe_is_pinned():
    assert recipe.DEFAULT_RECIPE == "lua" and set(recipe.RECIPES) == set(PINNED)
    for name, want in PINNED.items():
        assert recipe.values(name) == want, name
        for key in recipe.RECIPE_KEYS:  # each value names the line it reproduces
            assert "@" in recipe.source(key, name) and ":" in recipe.source(key, name)


@pytest.mark.parametrize("name", sorted(LR))
def test_lr_at_the_drops_of_300_epochs(name):
    cfg = resolved(name)
    got = [recipe.lr_at(e, cfg["epochs"], cfg["lr"], cfg["lr_schedule"]) for e in EPOCHS]
    assert got == pytest.approx(LR[name], rel=1e-12)
    assert recipe.lr_at(1, 300, 0.1, cfg["lr_schedule"]) == 0.1
    assert recipe.lr_at(300, 300, 0.1, cfg["lr_schedule"]) == pytest.approx(0.001)


def test_an_unknown_schedule_or_recipe_is_one_line():
    with pytest.raises(ValueError, match="lr schedule: expected one of lua, chainer, got 'x'"):
        recipe.lr_at(1, 300, 0.1, "x")
    with pytest.raises(ValueError, match="recipe: expected one of lua, bamos, chainer"):
        recipe.values("paper")


def test_dropout_rule_per_recipe_and_augmentation():
    for name, (on, off) in (("lua", (0.0, 0.2)), ("bamos", (0.0, 0.0)), ("chainer", (0.2, 0.2))):
        assert resolved(name, "on")["dropout"] == on and resolved(name, "off")["dropout"] == off


def tiny_model():
    return nn.Sequential(nn.Linear(3, 2))


def test_optimizer_of_each_recipe():
    lua = recipe.make_optimizer("sgd", tiny_model().parameters(), 0.1, resolved("lua"))
    bamos = recipe.make_optimizer("sgd", tiny_model().parameters(), 0.1, resolved("bamos"))
    chainer = recipe.make_optimizer("sgd", tiny_model().parameters(), 0.1, resolved("chainer"))
    assert type(lua) is torch.optim.SGD and type(bamos) is torch.optim.SGD
    for opt, nesterov in ((lua, True), (bamos, False)):
        g = opt.param_groups[0]
        assert (g["momentum"], g["dampening"], g["nesterov"]) == (0.9, 0, nesterov)
        assert g["weight_decay"] == 1e-4
    assert isinstance(chainer, recipe.ChainerMomentum)
    g = chainer.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, True, 1e-4)
    # the default (no config) is lua's
    default = recipe.make_optimizer("sgd", tiny_model().parameters(), 0.1).param_groups[0]
    assert default["nesterov"] is True and default["momentum"] == 0.9


def one_param_steps(opt_factory, grads, lrs):
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = opt_factory([p])
    out = []
    for grad, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor([grad], dtype=torch.float64)
        opt.step()
        out.append(float(p.detach()))
    return out


def test_chainer_nesterov_ag_matches_a_hand_computed_update():
    # Two steps by hand, Chainer's NesterovAG with its WeightDecay hook (m 0.9, wd 0.01), the lr
    # dropping from 0.1 to 0.01 between them:
    # step 1: g = 0.5 + 0.01*1 = 0.51; v = -0.1*0.51 = -0.051;
    #         p = 1 + 0.81*(-0.051) - 1.9*0.1*0.51 = 0.86179
    # step 2: g = 0.2 + 0.01*0.86179 = 0.2086179; v = 0.9*(-0.051) - 0.01*0.2086179 = -0.047986179
    #         p = 0.86179 - 0.038868804990 - 0.003963740100 = 0.81895745491
    got = one_param_steps(
        lambda ps: recipe.ChainerMomentum(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        [0.5, 0.2],
        [0.1, 0.01],
    )
    assert got == pytest.approx([0.86179, 0.81895745491], abs=1e-10)
    # plain chainer momentum: p += v
    plain = one_param_steps(
        lambda ps: recipe.ChainerMomentum(ps, lr=0.1, momentum=0.9, nesterov=False),
        [0.5, 0.2],
        [0.1, 0.1],
    )
    assert plain == pytest.approx([1 - 0.05, 1 - 0.05 - (0.045 + 0.02)], abs=1e-12)


def test_chainer_and_torch_nesterov_differ_from_the_first_step():
    # First step from rest: chainer -(m^2 + 1 + m) lr g = -2.71 lr g; torch -(1 + m) lr g.
    chainer = one_param_steps(lambda ps: recipe.ChainerMomentum(ps, lr=0.1), [1.0], [0.1])
    torch_sgd = one_param_steps(
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), [1.0], [0.1]
    )
    assert chainer == pytest.approx([1 - 0.271]) and torch_sgd == pytest.approx([1 - 0.19])


def test_chainer_momentum_state_survives_a_checkpoint():
    model = tiny_model()
    opt = recipe.ChainerMomentum(model.parameters(), lr=0.1, weight_decay=1e-4)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    again = recipe.ChainerMomentum(model.parameters(), lr=0.1, weight_decay=1e-4)
    again.load_state_dict(opt.state_dict())
    for p in model.parameters():
        assert torch.equal(again.state[p]["velocity"], opt.state[p]["velocity"])


def test_normalisation_constants():
    assert recipe.normalization("lua", "cifar10") == ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
    assert recipe.normalization("lua", "cifar100") == data.NORMALIZATION["cifar100"]
    assert recipe.NORMS["lua"] == data.NORMALIZATION
    mean, std = recipe.normalization("bamos", "cifar10")
    assert mean == pytest.approx([255 * m for m in BAMOS_MEAN], rel=1e-12)
    assert std == pytest.approx([255 * s for s in BAMOS_STD], rel=1e-12)
    assert mean == pytest.approx((125.3069, 122.9504, 113.8655), abs=1e-4)
    with pytest.raises(
        ValueError, match="norm bamos: has constants for cifar10 only, not cifar100"
    ):
        recipe.normalization("bamos", "cifar100")
    own = ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))  # the generated set: its own statistics
    assert recipe.normalization("bamos", "synthetic", own) == own


@pytest.mark.parametrize("name", ["lua", "bamos", "chainer"])
def test_padding_value_follows_each_recipes_order_and_constants(name):
    """lua/chainer normalise, then pad with 0 (the mean); bamos pads black raw pixels, then
    normalises with its own constants: the padded pixels are -mean/std there."""
    cfg = resolved(name)
    mean, std = recipe.normalization(cfg["norm"], "cifar10")
    normalize = Normalizer(mean, std, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    out = augment(x, normalize, gen, cfg["augment_order"])
    for c in range(3):
        seen = torch.unique(out[:, c]).tolist()
        image = (128 - mean[c]) / std[c]
        pad = 0.0 if name != "bamos" else -mean[c] / std[c]
        assert len(seen) == 2, (name, c, seen)  # the image's value and the padding's
        assert sorted(seen) == pytest.approx(sorted([image, pad]), abs=1e-5), (name, c)


def conv_std(conv):
    return float(conv.weight.detach().double().std())


def model_of(name, model="densenet40-k12", augment="on"):
    cfg = resolved(name, augment)
    torch.manual_seed(0)
    return build_model(
        model,
        stem=cfg["stem"],
        dropout=cfg["dropout"],
        bias=cfg["bias"] == "on",
        init=cfg["init"],
        bn_eps=cfg["bn_eps"],
    )


def test_init_fan_mode_of_each_recipe():
    for name in ("lua", "bamos", "chainer"):
        m = model_of(name)
        last = m.features[-1].conv2  # 3x3, 436 inputs, 12 outputs
        stem = m.stem
        k_in, k_out = 9 * last.in_channels, 9 * last.out_channels
        if name == "chainer":  # He fan-in; the stem and the FC layer LeCun normal
            assert conv_std(last) == pytest.approx(math.sqrt(2 / k_in), rel=0.02)
            assert conv_std(stem) == pytest.approx(math.sqrt(1 / 27), rel=0.15)
            fc = m.fc.weight.detach().double().std()
            assert float(fc) == pytest.approx(math.sqrt(1 / m.fc.in_features), rel=0.05)
        else:  # He fan-out everywhere; the FC keeps torch's U(+-1/sqrt(in)): std 1/sqrt(3 in)
            assert conv_std(last) == pytest.approx(math.sqrt(2 / k_out), rel=0.02)
            assert conv_std(stem) == pytest.approx(math.sqrt(2 / (9 * stem.out_channels)), rel=0.15)
            fc = m.fc.weight.detach().double().std()
            assert float(fc) == pytest.approx(1 / math.sqrt(3 * m.fc.in_features), rel=0.05)
        assert float(m.fc.bias.detach().abs().max()) == 0


def test_bias_stem_and_bn_eps_of_each_recipe():
    lua, bamos, chainer = (model_of(n) for n in ("lua", "bamos", "chainer"))
    convs = {
        n: [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        for n, m in (("lua", lua), ("bamos", bamos), ("chainer", chainer))
    }
    assert all(c.bias is None for c in convs["lua"] + convs["bamos"])
    assert all(
        c.bias is not None and float(c.bias.detach().abs().max()) == 0 for c in convs["chainer"]
    )
    assert (lua.stem.out_channels, bamos.stem.out_channels, chainer.stem.out_channels) == (
        16,
        24,
        16,
    )
    bc = model_of("lua", "densenet-bc40-k12")
    assert bc.stem.out_channels == 24  # 2k for BC
    for name, m, eps in (("lua", lua, 1e-5), ("bamos", bamos, 1e-5), ("chainer", chainer, 2e-5)):
        assert {b.eps for b in m.modules() if isinstance(b, nn.BatchNorm2d)} == {eps}, name
    # dropout in the layers: lua with augmentation none, chainer 0.2
    assert lua.features[0].dropout == 0 and chainer.features[0].dropout == 0.2


def test_bn_running_variance_starts_as_each_recipes_framework_does():
    # Chainer's BatchNormalization: avg_var = numpy.zeros(size); torch's running_var: ones.
    for name, start in (("lua", 1.0), ("bamos", 1.0), ("chainer", 0.0)):
        m = model_of(name)
        bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
        assert {float(v) for b in bns for v in b.running_var.unique()} == {start}, name
        assert {float(v) for b in bns for v in b.running_mean.unique()} == {0.0}, name


class FixedLogits(nn.Module):
    """Predicts class 1 for the images whose first pixel is odd, else class 0."""

    def forward(self, x):
        odd = (x[:, 0, 0, 0].round().long() % 2).float()
        return torch.stack([1 - odd, odd], 1) * 3.0


def test_batch_mean_evaluation_averages_per_batch_as_chainers_evaluator():
    from densenet.steps import evaluate

    # 5 images, batches of 2: [right, wrong], [right, right], [wrong]
    x = torch.zeros(5, 3, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([1, 0, 0, 1, 1], dtype=torch.uint8)
    y = torch.tensor([1, 1, 0, 1, 0])
    model = FixedLogits()
    _, per_image = evaluate(model, x, y, lambda b: b.float(), 2)
    loss_b, per_batch = evaluate(model, x, y, lambda b: b.float(), 2, batch_mean=True)
    assert per_image == pytest.approx(100 * 2 / 5)
    assert per_batch == pytest.approx(100 * (1 / 2 + 0 + 1) / 3)
    logits = model(x.float())
    per_batch_loss = [
        float(nn.functional.cross_entropy(logits[i : i + 2], y[i : i + 2])) for i in (0, 2, 4)
    ]
    assert loss_b == pytest.approx(sum(per_batch_loss) / 3)


def test_chainer_evaluates_in_its_training_batch_averaged_per_batch():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert recipe.eval_batch_mean("chainer")
    assert not recipe.eval_batch_mean("lua") and not recipe.eval_batch_mean("bamos")
    assert not recipe.eval_batch_mean(None)
    assert recipe.default_eval_batch(cuda, 64, "chainer") == 64
    assert recipe.default_eval_batch(cuda, 64, "lua") == recipe.EVAL_BATCH_CUDA
    assert recipe.default_eval_batch(cuda, 64) == recipe.EVAL_BATCH_CUDA
    assert recipe.default_eval_batch(cpu, 64, "bamos") == 64


def seeded(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_chainer_batches_run_across_epoch_boundaries_as_chainers_iterator():
    from densenet.feed import epoch_batches, stream_batches

    # 5 images of 2x2 whose pixels hold their index; batches of 2. SerialIterator: epoch 1 is
    # P1[0:2], P1[2:4], P1[4] + P2[0] (its `epoch` ticks there); epoch 2 continues at P2[1]:
    # P2[1:3], P2[3:5] (ends exactly at the boundary); epoch 3 P3[0:2], P3[2:4], P3[4] + P4[0].
    n, bs = 5, 2
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    y = torch.arange(n)
    P = {e: torch.randperm(n, generator=seeded(100 + e)).tolist() for e in (1, 2, 3, 4)}
    expected = {
        1: [P[1][0:2], P[1][2:4], [P[1][4], P[2][0]]],
        2: [P[2][1:3], P[2][3:5]],
        3: [P[3][0:2], P[3][2:4], [P[3][4], P[4][0]]],
    }
    stream = []
    for e in (1, 2, 3):
        got = stream_batches(
            x, y, bs, lambda b: b.float(), seeded(100 + e), False, "official", e, seeded(101 + e)
        )
        batches = [(xb[:, 0, 0, 0].long().tolist(), yb.tolist()) for xb, yb in got]
        assert [b[1] for b in batches] == expected[e], e
        assert all(b[0] == b[1] for b in batches)
        stream += [i for b in batches for i in b[1]]
    assert stream == P[1] + P[2] + P[3] + P[4][:1]
    # the other recipes' epoch: the same permutation, a partial last batch
    lua = [
        yb.tolist()
        for _, yb in epoch_batches(x, y, bs, lambda b: b.float(), seeded(101), False, "official")
    ]
    assert lua == [P[1][0:2], P[1][2:4], P[1][4:]]
    with pytest.raises(ValueError, match="batch size: expected 1 to 5"):
        next(stream_batches(x, y, 6, lambda b: b, seeded(0), False, "official", 1, seeded(1)))


def test_chainer_lr_drops_after_the_iteration_that_crosses_the_epoch():
    from densenet.feed import stream_iterations

    # CIFAR-10, batch 64, 300 epochs: iterations ceil(e * 50000 / 64) end epoch e (1-based).
    n, bs = 50000, 64
    assert stream_iterations(1, n, bs) == (0, 782)  # 782 batches, the last straddling
    assert stream_iterations(2, n, bs) == (782, 1563)
    assert stream_iterations(300, n, bs)[1] == 234375
    # ManualScheduleTrigger([150, 225], 'epoch') fires after iteration 117,188 / 175,782, the
    # last of epochs 150 / 225: iteration 117,188 trains at 0.1, 117,189 at 0.01.
    assert stream_iterations(150, n, bs)[1] == 117188 == math.ceil(150 * n / bs)
    assert stream_iterations(151, n, bs)[0] == 117188
    assert stream_iterations(225, n, bs)[1] == 175782
    lr = {e: recipe.lr_at(e, 300, 0.1, "chainer") for e in (150, 151, 225, 226)}
    assert lr == {150: 0.1, 151: 0.01, 225: 0.01, 226: 0.001}


class Recorder:
    def __init__(self):
        self.labels = []

    def set_lr(self, lr):
        self.lr = lr

    def __call__(self, xb, yb):
        self.labels.append(yb.tolist())


class NoAcc:
    def reset(self):
        pass

    def read(self):
        return 0.0, 0.0


@pytest.mark.parametrize("name", ["lua", "bamos", "chainer"])
def test_the_trainer_streams_batches_for_chainer_only(name):
    from densenet import train

    n, bs = 10, 4
    x = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    y = torch.arange(n)
    cfg = {"recipe": name, "seed": 3, "augment": "off", "batch_size": bs}
    cfg["augment_order"] = "official"
    sizes = []
    for epoch in (1, 2):
        step = Recorder()
        train.train_epoch(
            cfg, epoch, 0.1, step, NoAcc(), x, y, lambda b: b.float(), torch.device("cpu")
        )
        sizes.append([len(b) for b in step.labels])
    assert sizes == ([[4, 4, 4], [4, 4]] if name == "chainer" else [[4, 4, 2], [4, 4, 2]])
    if name == "chainer":
        assert [train.epoch_images(cfg, e, n) for e in (1, 2)] == [12, 8]


def test_lua_stem_gives_table_2_parameter_counts():
    # Table 2 (liuzhuang13/DenseNet README.md:106-107): 1.0M and 7.0M for L=40/100, k=12.
    assert count_params(model_of("lua", "densenet40-k12")) == 1019722
    assert count_params(model_of("lua", "densenet100-k12")) == 6979642


def parse_train(*args):
    parser = cli.build_parser()
    ns = parser.parse_args(
        ["train", "--out", "/tmp/unused", "--model", "densenet40-k12"] + list(args)
    )
    cfg = vars(ns).copy()
    cfg.pop("command")
    return recipe.resolve(cfg)


def test_cli_default_is_lua_and_each_option_overrides_one_value():
    assert {k: parse_train()[k] for k in recipe.RECIPE_KEYS} == dict(
        recipe.values("lua"), dropout=0.0
    )
    overrides = [
        (["--momentum", "0.8"], "momentum", 0.8),
        (["--nesterov", "off"], "nesterov", "off"),
        (["--momentum-form", "torch"], "momentum_form", "torch"),
        (["--weight-decay", "0"], "weight_decay", 0.0),
        (["--lr-schedule", "lua"], "lr_schedule", "lua"),
        (["--norm", "bamos"], "norm", "bamos"),
        (["--augment-order", "bamos"], "augment_order", "bamos"),
        (["--init", "lua"], "init", "lua"),
        (["--bias", "off"], "bias", "off"),
        (["--stem", "lua"], "stem", "lua"),
        (["--bn-eps", "1e-5"], "bn_eps", 1e-5),
        (["--dropout", "0"], "dropout", 0.0),
        (["--lr", "0.05"], "lr", 0.05),
        (["--batch-size", "32"], "batch_size", 32),
    ]
    base = parse_train("--recipe", "chainer")
    assert base["recipe"] == "chainer"
    for args, key, want in overrides:
        cfg = parse_train("--recipe", "chainer", *args)
        assert cfg[key] == want, args
        assert {k: v for k, v in cfg.items() if k != key} == {
            k: v for k, v in base.items() if k != key
        }, args


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--recipe", "paper"], "argument --recipe: invalid choice: 'paper'"),
        (["--momentum", "1.5"], "argument --momentum: expected a number in [0, 1)"),
        (["--weight-decay", "-1"], "argument --weight-decay: expected a finite non-negative"),
        (["--bn-eps", "0"], "argument --bn-eps: expected a finite positive number"),
        (["--nesterov", "chainer"], "argument --nesterov: invalid choice"),
        (
            ["--recipe", "bamos", "--dataset", "cifar100", "--data-dir", "data"],
            "argument --norm: norm bamos: has constants for cifar10 only, not cifar100",
        ),
    ],
)
def test_bad_recipe_options_exit_2_one_line(tmp_path, capsys, args, fragment):
    out = str(tmp_path / "c")
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--out", out, "--model", "densenet40-k12"] + args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and fragment in err, err
    assert len(err.strip().splitlines()) <= 2
    assert not os.path.exists(os.path.join(out, "summary.json"))


def test_a_cell_records_its_recipe_and_every_resolved_value(tmp_path):
    out = str(tmp_path / "cell")
    res = densenet(
        "train", "--out", out, "--model", "densenet-bc40-k12", "--dataset", "synthetic",
        "--n-train", "64", "--n-test", "32", "--epochs", "1", "--device", "cpu",
        "--recipe", "chainer", "--momentum", "0.8",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    want = dict(recipe.values("chainer"), momentum=0.8, dropout=0.2, recipe="chainer")
    for name in ("summary.json", "env.json"):
        config = read_json(os.path.join(out, name))["config"]
        assert {k: config[k] for k in want} == want, name


def old_config(**changes):
    """A config as the trainer resolved it before recipes: no recipe, momentum, nesterov,
    momentum_form, weight_decay, lr_schedule, norm, init, bn_eps keys."""
    cfg = parse_train(
        "--dataset", "synthetic", *sum((["--%s" % k, v] for k, v in changes.items()), [])
    )
    for key in celldir.LATER_OPTIONS:
        if key != "compile":
            cfg.pop(key)
    return cfg


def test_a_checkpoint_from_before_recipes_resumes_only_where_it_computes_the_same(tmp_path):
    """Before recipes every cell trained as lua does, but with chainer's lr schedule: such a
    checkpoint resumes under --lr-schedule chainer and is another config under lua's."""
    cell = celldir.Cell(str(tmp_path))
    old = old_config()
    checkpoint.save(cell.checkpoint, {"epoch": 1, "config": celldir.resume_key(old)})
    same = parse_train("--dataset", "synthetic", "--lr-schedule", "chainer")
    assert celldir.inspect_checkpoint(cell, same).state is not None
    with pytest.raises(ValueError, match=r"lr_schedule: 'chainer' vs 'lua'"):
        celldir.inspect_checkpoint(cell, parse_train("--dataset", "synthetic"))
    stale = celldir.inspect_checkpoint(
        cell, dict(parse_train("--dataset", "synthetic"), stale_checkpoint="restart")
    )
    assert stale.aside == ".stale" and stale.state is None


def test_the_resume_key_holds_the_recipe_and_its_values(tmp_path):
    cell = celldir.Cell(str(tmp_path))
    lua = parse_train("--dataset", "synthetic")
    checkpoint.save(cell.checkpoint, {"epoch": 1, "config": celldir.resume_key(lua)})
    assert celldir.inspect_checkpoint(cell, lua).state is not None
    for args, diff in (
        (["--recipe", "bamos"], "recipe: 'lua' vs 'bamos'"),
        (["--nesterov", "off"], "nesterov: 'on' vs 'off'"),
        (["--bn-eps", "2e-5"], "bn_eps: 1e-05 vs 2e-05"),
        (["--momentum-form", "chainer"], "momentum_form: 'torch' vs 'chainer'"),
    ):
        with pytest.raises(ValueError, match=diff):
            celldir.inspect_checkpoint(cell, parse_train("--dataset", "synthetic", *args))


# Keys the trainer records that the report's table does not check yet.
NOT_IN_REPORT = set()


def test_the_reports_recipe_table_agrees_with_the_trainer():
    """report/ may not import densenet/, so it keeps its own table: each value the trainer
    resolves is one the report accepts as that recipe's, with and without augmentation."""
    assert set(references.RECIPES) == set(recipe.RECIPES)
    assert references.DEFAULT_RECIPE == recipe.DEFAULT_RECIPE
    for name in recipe.RECIPES:
        report_keys = set(references.RECIPES[name])
        assert report_keys <= set(recipe.RECIPE_KEYS), name
        assert set(recipe.RECIPE_KEYS) - report_keys == NOT_IN_REPORT, name
        for aug in ("on", "off"):
            cfg = resolved(name, aug)
            run = pd.Series(dict(cfg, dataset="cifar10", n_train=50000, n_test=10000))
            assert references.overrides(run) == [], (name, aug)
            allowed = references.recipe_values(name, run)
            for key in report_keys - {"augment_order"} if aug == "off" else report_keys:
                assert any(references._same(cfg[key], a) for a in allowed[key]), (name, key)


def test_docs_recipes_md_lists_every_value_and_source():
    with open(os.path.join(REPO, "docs", "recipes.md")) as f:
        doc = f.read()
    assert recipe.markdown_table() in doc
    for short, full in recipe.SOURCES.items():
        assert full in doc, short
