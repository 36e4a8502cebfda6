"""Published numbers (report/references/, copied from ../shared/references with their sources)
and the statistical verdict of a group of seeds against one of them."""

import math
import os
import re

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
# The paper's recipe beyond the protocol name (Huang et al. 2017, section 4.2): the full sets,
# batch 64, SGD at lr 0.1, dropout 0.2 only without augmentation, and the official Lua code's
# augmentation (normalize, then zero-pad). densenet/train.py resolve() leaves n_train/n_test
# None for "the full set" and records the resolved rest in summary.json config; a missing key
# (NaN in runs.csv: an older cell) means the protocol's default, which is the paper's value.
FULL_SETS = {"cifar10": (50000, 10000), "cifar100": (50000, 10000)}
PAPER_BATCH = 64
PAPER_LR = 0.1
PAPER_DROPOUT = {"off": 0.2, "on": 0.0}  # by augment
PAPER_AUGMENT_ORDER = "official"
PAPER_BIAS = "off"  # convolutions without bias, as in the authors' Lua code
# Choices that reproduce other implementations (README: --augment-order bamos, --bias on):
# a run with one is no paper comparison, but it is one with the third-party rows.
VARIANT_KEYS = ("augment_order", "bias")
PAPER_SOURCE = "paper"  # the `source` of Table 2's rows in the published table
# Not gated: `stem`, whose two choices are both the authors' ("paper": 16 channels as the
# paper's text says; "lua": 2k channels as their Lua code builds it).
DEFAULT_TOLERANCE = 0.5  # error points (percent); stated on the page, set with --tolerance
ALPHA = 0.05


def published():
    """The published-errors table with one row per (source, model, dataset, augmentation)."""
    table = pd.read_csv(os.path.join(REFERENCE_DIR, PUBLISHED_CSV))
    table["augment"] = table["augmentation"].map({"yes": "on", "no": "off"})
    return table


def chainer_curves():
    """Digitized chainer curves, long format: version, epoch, main_loss, test_error_pct."""
    frames = []
    for version, name in sorted(CHAINER_CSVS.items()):
        frame = pd.read_csv(os.path.join(REFERENCE_DIR, name))
        frame.insert(0, "version", version)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def model_key(name):
    """'densenet-bc100-k12' -> ('DenseNet-BC', 100, 12); None for models without references."""
    match = MODEL_NAME.match(str(name))
    if not match:
        return None
    family = "DenseNet-BC" if match.group("bc") else "DenseNet"
    return family, int(match.group("depth")), int(match.group("growth"))


def references_for(table, model, dataset, augment):
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


def not_comparable(group):
    """Why a group of completed runs is no paper comparison (None when it is one).

    Only the official data, the paper protocol (300 epochs), the paper's optimizer and its
    recipe (recipe_difference) make a final error comparable with Table 2; a jpeg75 rebuild or
    synthetic data never is, and neither is a seed whose data identity was not recorded.
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
    return recipe_difference(group, lambda key: key not in VARIANT_KEYS)


def rows_for(refs, group):
    """(rows, why): the published rows these runs may be compared with. A run with another
    implementation's variant (VARIANT_KEYS) is compared with the third-party rows only; why
    names the variant when it removed the paper's rows."""
    why = recipe_difference(group, lambda key: key in VARIANT_KEYS)
    if why is None:
        return refs, None
    return refs[refs["source"] != PAPER_SOURCE], why


def recipe_difference(group, keys=lambda key: True):
    """The config keys (those `keys` accepts) of these runs that are not the paper's recipe,
    as a reason; None when every recorded value is the paper's (an unrecorded one is the
    protocol default)."""
    found = []
    for _, run in group.iterrows():
        for key, want in paper_recipe(run).items():
            if not keys(key):
                continue
            got = run.get(key)
            if not _recorded(got) or _same(got, want):
                continue
            full = " the full set" if key in ("n_train", "n_test") else ""
            text = "%s %s, the paper uses%s %s" % (key, _plain(got), full, want)
            if text not in found:
                found.append(text)
    return "; ".join(found) or None


def paper_recipe(run):
    """{config key: the paper's value} for one run (its dataset and augmentation decide the
    set sizes, the dropout and whether the augmentation order matters)."""
    recipe = {}
    sizes = FULL_SETS.get(run.get("dataset"))
    if sizes:
        recipe.update(n_train=sizes[0], n_test=sizes[1])
    recipe.update(batch_size=PAPER_BATCH, lr=PAPER_LR, bias=PAPER_BIAS)
    if run.get("augment") in PAPER_DROPOUT:
        recipe["dropout"] = PAPER_DROPOUT[run["augment"]]
    if run.get("augment") == "on":  # without augmentation the order computes nothing
        recipe["augment_order"] = PAPER_AUGMENT_ORDER
    return recipe


def _recorded(value):
    return value is not None and value == value and value != ""


def _same(got, want):
    if isinstance(want, str):
        return str(got) == want
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _plain(value):
    """12.0 -> '12', 0.4 -> '0.4' (runs.csv turns integer columns with gaps into floats)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "%d" % number if number.is_integer() else "%g" % number


def verdict(errors, published_value, tolerance=DEFAULT_TOLERANCE, alpha=ALPHA):
    """Compare seed errors with a published value.

    With n >= 2 seeds, both at level alpha:
    - equivalence: two one-sided t-tests (TOST) that our mean lies within +-tolerance points
      of the published value, taken as a fixed target;
    - difference: the published value is one run (the sources do not say it is a mean of
      several), so it is tested as one more draw from our seeds' distribution, a
      prediction-interval t-test: t = (mean - published) / (s * sqrt(1 + 1/n)), df n - 1,
      two-sided. A one-sample t-test would treat it as the exact population mean and call a
      faithful reproduction "differs" more often the more seeds it has.
    Returns {"class", "text", "p_equivalent", "p_different", "delta"}.
    """
    errors = [float(e) for e in errors if e is not None and math.isfinite(float(e))]
    n = len(errors)
    out = {
        "p_equivalent": None,
        "p_different": None,
        "delta": (sum(errors) / n - published_value) if n else None,
    }
    if n == 0:
        return dict(out, **{"class": "none", "text": "no completed seed"})
    if n == 1:
        return dict(out, **{"class": "none", "text": "1 seed: no verdict"})
    mean = sum(errors) / n
    sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / (n - 1))
    if sd == 0:
        return dict(
            out, **{"class": "none", "text": "no verdict: the %d seeds gave identical errors" % n}
        )
    se, df = sd / math.sqrt(n), n - 1
    p_low = stats.t.sf((mean - (published_value - tolerance)) / se, df)
    p_high = stats.t.cdf((mean - (published_value + tolerance)) / se, df)
    p_eq = float(max(p_low, p_high))
    p_diff = prediction_p(mean, sd, n, published_value)
    out.update(p_equivalent=p_eq, p_different=p_diff)
    if p_eq < alpha:
        text = "reproduced: within \u00b1%g (TOST p=%.2g)" % (tolerance, p_eq)
        if p_diff < alpha:
            text += "; offset of %+.2f detectable (prediction t-test p=%.2g)" % (
                mean - published_value,
                p_diff,
            )
        return dict(out, **{"class": "pass", "text": text})
    if p_diff < alpha:
        return dict(
            out,
            **{
                "class": "fail",
                "text": "differs: %+.2f points (prediction t-test p=%.2g)"
                % (mean - published_value, p_diff),
            },
        )
    return dict(
        out,
        **{
            "class": "warn",
            "text": "inconclusive with %d seeds (TOST p=%.2g, prediction t-test p=%.2g)"
            % (n, p_eq, p_diff),
        },
    )


def prediction_p(mean, sd, n, published_value):
    """Two-sided p of the published value as one more draw from N(mean, sd) estimated from n
    seeds: (mean - published) has variance sd^2 (1 + 1/n), t with n - 1 df."""
    t = (mean - published_value) / (sd * math.sqrt(1.0 + 1.0 / n))
    return float(2 * stats.t.sf(abs(t), n - 1))
