"""How a cell is named on the page: its *group* (what was trained: model, data, recipe) and its
*variant* (where it ran: device, torch, cuDNN, TF32, determinism). Seeds of one group x variant
are replicates; the heatmap, the comparison and the curves all use these two keys."""

import pandas as pd

GROUP_AXES = ("model", "dataset", "augment", "optimizer", "protocol")
VARIANT_AXES = ("device", "torch", "cudnn", "tf32", "deterministic")
AXIS_NAMES = {
    "device": "",
    "torch": "torch ",
    "cudnn": "cuDNN ",
    "tf32": "TF32 ",
    "deterministic": "determ. ",
    "optimizer": "",
    "protocol": "",
}
# The paper's names for the four benchmark settings (C10+ = standard augmentation).
DATASET_SHORT = {"cifar10": "C10", "cifar100": "C100"}
UNKNOWN = "?"


def text(value):
    """A param as text; None and NaN (an unknown param of an extra cell) become '?'."""
    return UNKNOWN if value is None or value != value else str(value)


def varying(runs, axes):
    """The axes that take more than one value among these runs."""
    return [a for a in axes if a in runs and runs[a].fillna(UNKNOWN).nunique() > 1]


def dataset_label(dataset, augment):
    short = DATASET_SHORT.get(dataset)
    if short:
        return short + ("+" if augment == "on" else "")
    return "%s (aug %s)" % (dataset, augment)


def add_labels(runs):
    """A copy of runs with `group` and `variant` columns (only varying axes beyond the model,
    dataset and augmentation are spelled out, so labels stay short)."""
    runs = runs.copy()
    clean = runs[runs["canary"].fillna("none") == "none"]
    extra_group = varying(clean, ("optimizer", "protocol"))
    variant_axes = varying(clean, VARIANT_AXES) or ["torch"]

    def group(row):
        parts = [text(row["model"]), dataset_label(text(row["dataset"]), text(row["augment"]))]
        parts += [text(row[a]) for a in extra_group]
        return " \u00b7 ".join(parts)

    def variant(row):
        return " \u00b7 ".join(AXIS_NAMES[a] + text(row[a]) for a in variant_axes)

    runs["group"] = runs.apply(group, axis=1) if len(runs) else pd.Series(dtype=str)
    runs["variant"] = runs.apply(variant, axis=1) if len(runs) else pd.Series(dtype=str)
    return runs
