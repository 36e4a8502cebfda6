"""Published numbers (report/references/, copied from ../shared/references with their sources)
and the statistical verdict of a group of seeds against one of them."""

from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Mapping

import pandas as pd
from scipy import stats

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references")
PUBLISHED_CSV = "published_cifar_errors.csv"
CHAINER_CSVS = {
    "2017": "chainer_t-hanya_2017_densenet40_c10_digitized.csv",
    "2016": "chainer_t-hanya_2016_densenet40_c10_digitized.csv",
}
# The chainer curves are DenseNet L=40 k=12 on CIFAR-10 without augmentation (README.md there).
CHAINER_CELLS = {"model": "densenet40-k12", "dataset": "cifar10", "augment": "off"}
MODEL_NAME = re.compile(r"^densenet(?P<bc>-bc)?(?P<depth>\d+)-k(?P<growth>\d+)$")
# Only these identities are the data the published numbers were measured on.
COMPARABLE_IDENTITY = "official"
PAPER_EPOCHS = 300
FULL_SETS = {"cifar10": (50000, 10000), "cifar100": (50000, 10000)}
PAPER_DROPOUT = {"off": 0.2, "on": 0.0}  # by augment: dropout only without augmentation
PAPER_SOURCE = "paper"  # the `source` of Table 2's rows in the published table
# Named training recipes (summary.json / env.json config.recipe): each is compared with its own
# implementation's published rows only. `lua` is the authors' Lua Torch code, whose runs are
# Table 2 of the paper; a cell written before recipes were recorded has no `recipe` and is
# taken as `lua` (compared only when its recorded values are lua's).
RECIPE_SOURCES = {
    "lua": ("paper",),
    "bamos": ("bamos/densenet.pytorch", "bamos/densenet.pytorch issue 5"),
    "chainer": ("chainer t-hanya (digitized)",),
}
DEFAULT_RECIPE = "lua"
# Each recipe's resolved values (densenet/recipe.py RECIPES resolves them, the cell records them in
# config; tests/test_recipes.py checks that the two tables agree: report/ does not import
# densenet/).
# A tuple allows several values; a callable takes the augmentation ("on"/"off"). A key a cell did
# not record (NaN in runs.csv: an older cell) is the recipe's value. `augment_order` is not gated
# without augmentation, where the order computes nothing. Common to all: the full sets, batch 64, lr
# 0.1, momentum 0.9, weight decay 1e-4 (Huang et al. 2017 section 4.2; bamos train.py; t-hanya
# train.py).
_COMMON = dict(batch_size=64, lr=0.1, momentum=0.9, weight_decay=1e-4)
RECIPES = {
    # liuzhuang13/DenseNet: Nesterov, lr /10 from epochs 150 and 225 (of 300), normalize then
    # zero-pad, He fan-out init, convolutions without bias; stem: the 2016 code behind Table 2
    # builds 16 channels for plain DenseNets, 2k for BC (`paper`, the trainer's lua value), the
    # code today 2k for all (`lua`): both are the authors'.
    "lua": dict(
        _COMMON,
        nesterov="on",
        momentum_form="torch",
        lr_schedule="lua",
        norm="lua",
        augment_order="official",
        init="lua",
        bias="off",
        stem=("paper", "lua"),
        bn_eps=1e-5,
        dropout=lambda augment: PAPER_DROPOUT.get(augment),
    ),
    # bamos/densenet.pytorch: plain momentum, the same drops, its own mean/std, zero-pad then
    # normalize, the Lua code's init, no bias, a 2k stem, no dropout.
    "bamos": dict(
        _COMMON,
        nesterov="off",
        momentum_form="torch",
        lr_schedule="lua",
        norm="bamos",
        augment_order="bamos",
        init="lua",
        bias="off",
        stem="lua",
        bn_eps=1e-5,
        dropout=lambda augment: 0.0,
    ),
    # t-hanya/chainer-DenseNet: Chainer's NesterovAG (momentum_form chainer), lr x0.1 after
    # epochs 150 and 225, chainer's initializers, convolutions with bias, a 16-channel stem,
    # BN eps 2e-5, dropout 0.2; batches across epoch boundaries and the test error as a mean
    # over batches, as Chainer's iterator and Evaluator (docs/recipes.md).
    "chainer": dict(
        _COMMON,
        nesterov="on",
        momentum_form="chainer",
        lr_schedule="chainer",
        norm="lua",
        augment_order="official",
        init="chainer",
        bias="on",
        stem="paper",
        bn_eps=2e-5,
        dropout=lambda augment: 0.2,
    ),
}
# Keys of a recipe (RECIPES) plus the set sizes, in the order a reason names them.
RECIPE_KEYS = (
    "n_train",
    "n_test",
    "batch_size",
    "lr",
    "momentum",
    "nesterov",
    "momentum_form",
    "lr_schedule",
    "weight_decay",
    "norm",
    "augment_order",
    "init",
    "bias",
    "stem",
    "bn_eps",
    "dropout",
)
DEFAULT_TOLERANCE = 0.5  # error points (percent); stated on the page, set with --tolerance
ALPHA = 0.05
# Verdict names (comparisons.csv `verdict`, `python -m report --fail-on`) and their classes.
VERDICTS = {
    "reproduced": "pass",
    "reproduced-offset": "offset",
    "differs": "fail",
    "not-reproduced": "fail",
    "inconclusive": "warn",
    "no-verdict": "none",
}
NOT_COMPARED = "not-compared"


def published() -> pd.DataFrame:
    """The published-errors table with one row per (source, model, dataset, augmentation)."""
    table = pd.read_csv(os.path.join(REFERENCE_DIR, PUBLISHED_CSV))
    table["augment"] = table["augmentation"].map({"yes": "on", "no": "off"})
    return table


def chainer_curves() -> pd.DataFrame:
    """Digitized chainer curves, long format: version, epoch, main_loss, test_error_pct."""
    frames = []
    for version, name in sorted(CHAINER_CSVS.items()):
        frame = pd.read_csv(os.path.join(REFERENCE_DIR, name))
        frame.insert(0, "version", version)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def model_key(name: object) -> tuple[str, int, int] | None:
    """'densenet-bc100-k12' -> ('DenseNet-BC', 100, 12); None for models without references."""
    match = MODEL_NAME.match(str(name))
    if not match:
        return None
    family = "DenseNet-BC" if match.group("bc") else "DenseNet"
    return family, int(match.group("depth")), int(match.group("growth"))


def references_for(table: pd.DataFrame, model: str, dataset: str, augment: str) -> pd.DataFrame:
    """Rows of the published table for this model, dataset and augmentation."""
    key = model_key(model)
    if key is None:
        return table.iloc[0:0]
    family, depth, growth = key
    return table[
        (table["model"] == family)
        & (table["depth"] == depth)
        & (table["growth_rate"] == growth)
        & (table["dataset"] == dataset)
        & (table["augment"] == augment)
    ]


def not_comparable(group: pd.DataFrame) -> str | None:
    """Why a group of completed runs is no comparison with published numbers (None when it
    is one).

    Only the official data, the paper protocol (300 epochs), SGD and one named recipe without
    overrides (recipe_difference) make a final error comparable with that recipe's rows; a
    jpeg75 rebuild or synthetic data never is, and neither is a seed whose data identity was
    not recorded.
    """
    identities = sorted({str(i) for i in group["dataset_identity"].fillna("unidentified")})
    if identities != [COMPARABLE_IDENTITY]:
        return "trained on %s data, not the official CIFAR files" % (
            " + ".join(identities) or "unidentified"
        )
    protocols = sorted({str(p) for p in group["protocol"].dropna()})
    epochs = sorted({int(e) for e in group["epochs_planned"].dropna()})
    if protocols and protocols != ["paper"] or epochs and epochs != [PAPER_EPOCHS]:
        return "protocol %s (%s epochs), the paper trains %d" % (
            "/".join(protocols) or "?",
            "/".join(map(str, epochs)) or "?",
            PAPER_EPOCHS,
        )
    optimizers = sorted({str(o) for o in group["optimizer"].dropna()})
    if optimizers and optimizers != ["sgd"]:
        return "optimizer %s, the paper uses SGD" % "/".join(optimizers)
    return recipe_difference(group)


def recipe_of(run: pd.Series | Mapping[str, Any]) -> str:
    """The recipe a run is compared as: its recorded `recipe`, else lua (an older cell)."""
    value = run.get("recipe") if hasattr(run, "get") else None
    return str(value) if _recorded(value) else DEFAULT_RECIPE


def group_recipe(group: pd.DataFrame) -> str | None:
    """The one recipe of a group's runs, or None when they differ."""
    names = {recipe_of(run) for _, run in group.iterrows()}
    return names.pop() if len(names) == 1 else None


def recipe_difference(group: pd.DataFrame) -> str | None:
    """Why these runs are not one known recipe as its implementation ran it, or None: mixed
    or unknown recipe names, or recorded values other than the recipe's ("recipe bamos with
    overrides: nesterov on, bamos uses off"). An unrecorded value is the recipe's."""
    names = sorted({recipe_of(run) for _, run in group.iterrows()})
    if len(names) > 1:
        return "seeds of several recipes (%s)" % ", ".join(names)
    name = names[0]
    if name not in RECIPES:
        return "recipe %s has no reference implementation (known: %s)" % (
            name,
            ", ".join(sorted(RECIPES)),
        )
    found = []
    for _, run in group.iterrows():
        for text in overrides(run):
            if text not in found:
                found.append(text)
    if not found:
        return None
    recorded = any(_recorded(run.get("recipe")) for _, run in group.iterrows())
    what = "recipe %s with overrides" % name if recorded else "recipe not recorded (taken as lua)"
    return "%s: %s" % (what, "; ".join(found))


def overrides(run: pd.Series | Mapping[str, Any]) -> list[str]:
    """The recorded config values of one run that are not its recipe's, as texts
    ("nesterov on, bamos uses off"); empty for an unknown recipe."""
    name = recipe_of(run)
    found = []
    for key, want in recipe_values(name, run).items():
        got = run.get(key)
        if not _recorded(got) or any(_same(got, w) for w in want):
            continue
        full = " the full set" if key in ("n_train", "n_test") else ""
        user = "the paper uses" if name == DEFAULT_RECIPE else "%s uses" % name
        found.append(
            "%s %s, %s%s %s" % (key, _plain(got), user, full, " or ".join(map(_plain, want)))
        )
    return found


def override_keys(run: pd.Series | Mapping[str, Any]) -> str:
    """The names of the keys overrides() reports ('nesterov; norm'), '' when none."""
    return "; ".join(text.split(" ", 1)[0] for text in overrides(run))


def recipe_values(name: str, run: pd.Series | Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """{config key: (allowed values as text or numbers)} of recipe `name` for one run (its
    dataset decides the set sizes, its augmentation the dropout and whether the order
    matters); {} for an unknown recipe."""
    recipe = RECIPES.get(name)
    if recipe is None:
        return {}
    augment = run.get("augment")
    values = {}
    sizes = FULL_SETS.get(run.get("dataset"))
    if sizes:
        values.update(n_train=sizes[0], n_test=sizes[1])
    for key, want in recipe.items():
        if callable(want):
            want = want(augment)
        if want is None or key == "augment_order" and augment != "on":
            continue
        values[key] = want
    return {
        key: want if isinstance(want, tuple) else (want,)
        for key, want in sorted(values.items(), key=lambda kv: RECIPE_KEYS.index(kv[0]))
    }


def rows_for(refs: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    """The published rows of this group's recipe (RECIPE_SOURCES) among refs."""
    sources = RECIPE_SOURCES.get(group_recipe(group), ())
    return refs[refs["source"].isin(sources)]


def reference_name(name: str | None) -> str | None:
    """'bamos' -> 'bamos/densenet.pytorch': how a reason names a recipe's reference."""
    return {"lua": "the paper's Table 2"}.get(name, RECIPE_SOURCES.get(name, (name,))[0])


def _recorded(value: Any) -> bool:
    return value is not None and value == value and value != ""


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, str):
        return str(got) == want
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> str:
    """12.0 -> '12', 0.4 -> '0.4' (runs.csv turns integer columns with gaps into floats)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "%d" % number if number.is_integer() else "%g" % number


def verdict(
    errors: Iterable[float | None],
    published_value: float,
    tolerance: float = DEFAULT_TOLERANCE,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Compare seed errors with a published value.

    With n >= 2 seeds, both at level alpha:
    - equivalence: two one-sided t-tests (TOST) that our mean lies within +-tolerance points
      of the published value, taken as a fixed target;
    - difference: the published value is one run (the sources do not say it is a mean of
      several), so it is tested as one more draw from our seeds' distribution, a
      prediction-interval t-test: t = (mean - published) / (s * sqrt(1 + 1/n)), df n - 1,
      two-sided. A one-sample t-test would treat it as the exact population mean and call a
      faithful reproduction "differs" more often the more seeds it has.
    The two tests answer different questions, so all four outcomes occur (VERDICTS):
    equivalent only -> reproduced; both -> reproduced-offset (within the margin, yet the
    published run lies outside our seeds' spread); different only -> differs; neither ->
    inconclusive.
    Returns {"name", "class", "text", "p_equivalent", "p_different", "delta", "mean", "sd",
    "n"}.
    """
    errors = [float(e) for e in errors if e is not None and math.isfinite(float(e))]
    n = len(errors)
    mean = sum(errors) / n if n else None
    sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / (n - 1)) if n >= 2 else None
    out = {
        "p_equivalent": None,
        "p_different": None,
        "delta": (mean - published_value) if n else None,
        "mean": mean,
        "sd": sd,
        "n": n,
    }

    def named(name, text):
        return dict(out, name=name, text=text, **{"class": VERDICTS[name]})

    if n == 0:
        return named("no-verdict", "no completed seed")
    if n == 1:
        return named("no-verdict", "1 seed: no verdict")
    if sd == 0:
        return named("no-verdict", "no verdict: the %d seeds gave identical errors" % n)
    se, df = sd / math.sqrt(n), n - 1
    p_low = stats.t.sf((mean - (published_value - tolerance)) / se, df)
    p_high = stats.t.cdf((mean - (published_value + tolerance)) / se, df)
    p_eq = float(max(p_low, p_high))
    p_diff = prediction_p(mean, sd, n, published_value)
    out.update(p_equivalent=p_eq, p_different=p_diff)
    within = "within \u00b1%g points (TOST p=%.2g)" % (tolerance, p_eq)
    outside = (
        "published run outside our seeds' %g%% prediction interval (delta %+.2f points, p=%.2g)"
        % (100 * (1 - alpha), mean - published_value, p_diff)
    )
    if p_eq < alpha and p_diff < alpha:
        return named("reproduced-offset", "reproduced, offset detected: %s; %s" % (within, outside))
    if p_eq < alpha:
        return named("reproduced", "reproduced: %s" % within)
    if p_diff < alpha:
        return named(
            "differs",
            "differs: %s; within \u00b1%g not shown (TOST p=%.2g)" % (outside, tolerance, p_eq),
        )
    return named(
        "inconclusive",
        "inconclusive with %d seeds: within \u00b1%g not shown (TOST p=%.2g), published run "
        "inside our seeds' %g%% prediction interval (p=%.2g)"
        % (n, tolerance, p_eq, 100 * (1 - alpha), p_diff),
    )


def prediction_p(mean: float, sd: float, n: int, published_value: float) -> float:
    """Two-sided p of the published value as one more draw from N(mean, sd) estimated from n
    seeds: (mean - published) has variance sd^2 (1 + 1/n), t with n - 1 df."""
    t = (mean - published_value) / (sd * math.sqrt(1.0 + 1.0 / n))
    return float(2 * stats.t.sf(abs(t), n - 1))
