"""How a cell is named on the page: its *group* (what was trained: model, data, recipe) and its
*variant* (where it ran: device, torch, cuDNN, TF32, determinism). Seeds of one group x variant
are replicates; the heatmap, the comparison and the curves all use these two keys."""

import pandas as pd

from report import references

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
    "recipe_label": "recipe ",
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


def dataset_label(dataset, augment, identities=()):
    """'C10+', or 'C10+ [jpeg75]' when the data is not (only) the official files: the paper's
    names stand for the official benchmark, so other data must say what it is."""
    short = DATASET_SHORT.get(dataset)
    label = (
        short + ("+" if augment == "on" else "") if short else "%s (aug %s)" % (dataset, augment)
    )
    tags = identity_tags(dataset, identities)
    return label + (" [%s]" % "/".join(tags) if tags else "")


def identity_tags(dataset, identities):
    """Short names of the recorded identities, none when all are official (or the dataset's
    own name already says it, as for synthetic)."""
    found = sorted({str(i) for i in identities if i is not None and i == i and i != ""})
    if found in ([], ["official"], [dataset]):
        return []
    prefix = dataset + "-"
    return [i[len(prefix) :] if i.startswith(prefix) else i for i in found]


def recipe_label(row):
    """'bamos', or 'bamos+overrides (nesterov)' where recorded values are not the recipe's:
    such a cell trained something else than the recipe and must not be pooled with it."""
    name = references.recipe_of(row)
    keys = row.get("recipe_overrides")
    keys = str(keys).replace("; ", ", ") if keys is not None and keys == keys and keys else ""
    return name + ("+overrides (%s)" % keys if keys else "")


def add_labels(runs):
    """A copy of runs with `group` and `variant` columns (only varying axes beyond the model,
    dataset and augmentation are spelled out, so labels stay short) and `recipe_label`
    (recipe_label; named in the group where it varies)."""
    runs = runs.copy()
    runs["recipe_label"] = (
        [recipe_label(row) for _, row in runs.iterrows()] if len(runs) else pd.Series(dtype=str)
    )
    clean = runs[runs["canary"].fillna("none") == "none"]
    extra_group = varying(clean, ("optimizer", "protocol", "recipe_label"))
    variant_axes = varying(clean, VARIANT_AXES) or ["torch"]

    def group_key(row):
        return tuple(text(row[a]) for a in ("model", "dataset", "augment") + tuple(extra_group))

    # The data's identity is a property of the whole group: seeds without a record yet
    # (missing, failed) must carry the same label as their siblings that have one.
    identities = {}
    for _, row in runs.iterrows():
        identities.setdefault(group_key(row), set()).add(row.get("dataset_identity"))

    def group(row):
        key = group_key(row)
        parts = [key[0], dataset_label(key[1], key[2], identities[key])]
        parts += [AXIS_NAMES[a] + v for a, v in zip(extra_group, key[3:])]
        return " \u00b7 ".join(parts)

    def variant(row):
        return " \u00b7 ".join(AXIS_NAMES[a] + text(row[a]) for a in variant_axes)

    runs["group"] = runs.apply(group, axis=1) if len(runs) else pd.Series(dtype=str)
    runs["variant"] = runs.apply(variant, axis=1) if len(runs) else pd.Series(dtype=str)
    return runs
