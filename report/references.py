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

    Only the official data, the paper protocol (300 epochs) and the paper's optimizer make a
    final error comparable with Table 2; a jpeg75 rebuild or synthetic data never is.
    """
    identities = sorted({str(i) for i in group["dataset_identity"].dropna()})
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
    return None


def verdict(errors, published_value, tolerance=DEFAULT_TOLERANCE, alpha=ALPHA):
    """Compare seed errors with a published value.

    With n >= 2 seeds: equivalence by two one-sided t-tests (TOST) with margin +-tolerance
    points, and a two-sided one-sample t-test for any difference, both at level alpha.
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
    p_diff = float(stats.ttest_1samp(errors, published_value).pvalue)
    out.update(p_equivalent=p_eq, p_different=p_diff)
    if p_eq < alpha:
        text = "reproduced: within \u00b1%g (TOST p=%.2g)" % (tolerance, p_eq)
        if p_diff < alpha:
            text += "; offset of %+.2f detectable (t-test p=%.2g)" % (
                mean - published_value,
                p_diff,
            )
        return dict(out, **{"class": "pass", "text": text})
    if p_diff < alpha:
        return dict(
            out,
            **{
                "class": "fail",
                "text": "differs: %+.2f points (t-test p=%.2g)" % (mean - published_value, p_diff),
            },
        )
    return dict(
        out,
        **{
            "class": "warn",
            "text": "inconclusive with %d seeds (TOST p=%.2g, t-test p=%.2g)" % (n, p_eq, p_diff),
        },
    )
