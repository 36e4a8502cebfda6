"""The numbers of each report section, computed from the runs table (labels.add_labels applied).

Everything the page prints is computed here from runs.csv's columns, so a test can recompute it
from the CSV. Canary cells (an injected bug) never enter the heatmap, the comparison or the
axis deltas: they have their own panel.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Container, Iterable, Mapping

import pandas as pd

from report import references
from report.aggregate import IDENTITY_COLUMNS
from report.labels import AXIS_NAMES, VARIANT_AXES, text, varying
from report.study import PARAM_KEYS


def clean(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs without an injected bug."""
    return runs[runs["canary"].fillna("none") == "none"]


def finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and _isfinite(v)]


def _isfinite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def mean_std(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    """(mean, sample std or None, n) of the finite values."""
    values = finite(values)
    n = len(values)
    if not n:
        return None, None, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 else None
    return mean, std, n


def status_counts(frame: pd.DataFrame, skip: Container[str] = ("completed",)) -> str:
    """'2 failed, 1 missing' for the statuses not in skip."""
    counts = frame["status"].value_counts()
    return ", ".join("%d %s" % (counts[s], s) for s in sorted(counts.index) if s not in skip)


def heatmap(runs: pd.DataFrame) -> dict[str, Any]:
    """Final test error per group x variant: {"groups", "variants", "rows": [[entry]]}."""
    runs = clean(runs)
    groups, variants = sorted(runs["group"].unique()), sorted(runs["variant"].unique())
    rows = []
    for group in groups:
        row = []
        for variant in variants:
            cell = runs[(runs["group"] == group) & (runs["variant"] == variant)]
            done = cell[cell["status"] == "completed"]
            mean, std, n = mean_std(done["final_test_err"])
            row.append(
                {
                    "group": group,
                    "variant": variant,
                    "mean": mean,
                    "std": std,
                    "n": n,
                    "expected": len(cell),
                    "others": status_counts(cell),
                }
            )
        rows.append(row)
    return {"groups": groups, "variants": variants, "rows": rows}


# Seed states that leave a group's verdict open: these seeds may still finish (or be rerun).
# A skipped seed is not among them: its environment cannot run it, so no result will come.
PENDING = ("running", "missing", "failed", "corrupt")


def seeds_text(cell: pd.DataFrame) -> str:
    """'2 of 3 seeds (1 diverged)': every seed of a group x variant, not only the completed."""
    done = int((cell["status"] == "completed").sum())
    others = status_counts(cell)
    return "%d of %d seed%s" % (done, len(cell), "" if len(cell) == 1 else "s") + (
        " (%s)" % others if others else ""
    )


def comparison(
    runs: pd.DataFrame, tolerance: float, alpha: float = references.ALPHA
) -> dict[str, Any]:
    """Published comparison: {"blocks": [{group, variant, recipe, n, expected, seeds, mean,
    std, provisional, gradient_fail, refs: [...]}], "not_compared": [{group, variant, recipe,
    n, seeds, mean, std, reason}]}.

    Each group is compared with the published rows of its recipe (references.rows_for). The
    verdict uses the completed seeds, but every seed counts: a diverged seed of a comparable
    group means "not reproduced" (non-convergence is the failure this harness is for; no
    unfinished seed can undo it), unfinished seeds make any other verdict provisional, and a
    group with no completed seed is listed as not compared with its seeds' states.
    """
    table = references.published()
    blocks, not_compared = [], []
    runs = clean(runs)
    for (group, variant), cell in runs.groupby(["group", "variant"], sort=True):
        done = cell[cell["status"] == "completed"]
        mean, std, n = mean_std(done["final_test_err"])
        base = {
            "group": group,
            "variant": variant,
            "recipe": references.group_recipe(done if len(done) else cell) or "mixed",
            "n": n,
            "expected": len(cell),
            "seeds": seeds_text(cell),
            "mean": mean,
            "std": std,
        }
        why = eligibility(table, cell, done)
        if why:
            not_compared.append(dict(base, reason=why))
            continue
        refs = published_rows(table, done)
        diverged = int((cell["status"] == "diverged").sum())
        pending = status_counts(cell[cell["status"].isin(PENDING)], skip=())
        # The gradient stage of these cells' environment: a failed one makes every number of
        # the cells suspect, so the comparison says so beside the verdict.
        gradient_fail = "fail" in set(cell["gradcheck_verdict"].dropna())
        compared = []
        for _, ref in refs.iterrows():
            verdict = references.verdict(
                done["final_test_err"], float(ref["test_error_pct"]), tolerance, alpha
            )
            verdict = seed_states_verdict(verdict, diverged, len(cell), pending)
            reasons = verdict["reasons"] + (["gradient stage: fail"] if gradient_fail else [])
            compared.append(
                {
                    "source": ref["source"],
                    "published": float(ref["test_error_pct"]),
                    "citation": ref["citation"],
                    "delta": verdict["delta"],
                    "verdict": verdict["text"],
                    "verdict_name": verdict["name"],
                    "verdict_class": verdict["class"],
                    "provisional": verdict["provisional"],
                    "diverged": bool(diverged),
                    "p_equivalent": verdict["p_equivalent"],
                    "p_different": verdict["p_different"],
                    "reasons": "; ".join(reasons),
                }
            )
        blocks.append(
            dict(
                base,
                refs=compared,
                provisional=pending if pending and not diverged else None,
                gradient_fail=gradient_fail,
            )
        )
    return {"blocks": blocks, "not_compared": not_compared, "tolerance": tolerance}


def eligibility(table: pd.DataFrame, cell: pd.DataFrame, done: pd.DataFrame) -> str | None:
    """Why a group x variant gets no published comparison, or None."""
    if not len(done):
        return "no completed seed: %s" % status_counts(cell)
    # The data's identity comes first: it is the reason that no reference could lift.
    why = references.not_comparable(done)
    if why:
        return why
    if not len(published_rows(table, done)):
        first = done.iloc[0]
        recipe = references.group_recipe(done)
        return "recipe %s: %s has no number for %s on %s (augmentation %s)" % (
            recipe,
            references.reference_name(recipe),
            first["model"],
            first["dataset"],
            first["augment"],
        )
    return None


def published_rows(table: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    """The published rows of this group's recipe for its model, dataset and augmentation."""
    first = done.iloc[0]
    refs = references.references_for(table, first["model"], first["dataset"], first["augment"])
    return references.rows_for(refs, done)


def seed_states_verdict(
    verdict: dict[str, Any], diverged: int, expected: int, pending: str
) -> dict[str, Any]:
    """The statistical verdict of the completed seeds, overruled by a diverged seed
    (not-reproduced, final) and otherwise marked provisional while seeds are unfinished.
    Adds "provisional" (bool) and "reasons" (list of texts)."""
    verdict = dict(verdict, provisional=False, reasons=[])
    if diverged:
        verdict.update(name="not-reproduced", **{"class": references.VERDICTS["not-reproduced"]})
        verdict["text"] = "not reproduced: %d of %d seeds diverged; completed seeds: %s" % (
            diverged,
            expected,
            verdict["text"],
        )
        verdict["reasons"].append("%d of %d seeds diverged" % (diverged, expected))
        if pending:
            verdict["reasons"].append("also unfinished: %s" % pending)
    elif pending:
        verdict["provisional"] = True
        verdict["text"] = "provisional: %s (seeds unfinished: %s)" % (verdict["text"], pending)
        verdict["reasons"].append("seeds unfinished: %s" % pending)
    return verdict


# comparisons.csv (beside runs.csv): one row per group x variant x published row, and one per
# group x variant that was not compared (source empty, verdict "not-compared").
COMPARISON_COLUMNS = [
    "group",
    "variant",
    "recipe",
    "source",
    "published",
    "n",
    "expected",
    "mean",
    "sd",
    "delta",
    "tolerance",
    "p_tost",
    "p_prediction",
    "verdict",
    "provisional",
    "reasons",
]


def comparison_table(comparison: dict[str, Any]) -> pd.DataFrame:
    """The comparison as comparisons.csv rows (COMPARISON_COLUMNS), full precision."""
    rows = []
    for block in comparison["blocks"]:
        for ref in block["refs"]:
            rows.append(
                {
                    "group": block["group"],
                    "variant": block["variant"],
                    "recipe": block["recipe"],
                    "source": ref["source"],
                    "published": ref["published"],
                    "n": block["n"],
                    "expected": block["expected"],
                    "mean": block["mean"],
                    "sd": block["std"],
                    "delta": ref["delta"],
                    "tolerance": comparison["tolerance"],
                    "p_tost": ref["p_equivalent"],
                    "p_prediction": ref["p_different"],
                    "verdict": ref["verdict_name"],
                    "provisional": ref["provisional"],
                    "reasons": ref["reasons"],
                }
            )
    for row in comparison["not_compared"]:
        rows.append(
            {
                "group": row["group"],
                "variant": row["variant"],
                "recipe": row["recipe"],
                "n": row["n"],
                "expected": row["expected"],
                "mean": row["mean"],
                "sd": row["std"],
                "tolerance": comparison["tolerance"],
                "verdict": references.NOT_COMPARED,
                "provisional": False,
                "reasons": row["reason"],
            }
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def version_deltas(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The torch axis as pairs: each version against the first (in sorted order), every other
    parameter equal (same seed); [{"base", "other", "pairs", "summary"}], delta =
    error(other) - error(base). Empty when the study has one torch version."""
    versions = sorted({str(v) for v in clean(runs)["torch"].dropna()})
    out = []
    for other in versions[1:]:
        d = paired_deltas(runs, "torch", versions[0], other)
        out.append(dict(d, base=versions[0], other=other))
    return out


def axis_deltas(runs: pd.DataFrame, axis: str) -> dict[str, list[dict[str, Any]]]:
    """Completed cells paired across one on/off axis, all other params equal (same seed).

    Returns {"pairs": [...], "summary": [...]}; delta = error(off) - error(on), in points.
    A pair with a side that did not complete (diverged, failed, skipped, ...) has no delta but
    is named in the summary's note: a setting that breaks training is what this section is for.
    """
    return paired_deltas(runs, axis, "on", "off")


def paired_deltas(
    runs: pd.DataFrame,
    axis: str,
    base: str,
    other: str,
    group_of: Callable[[pd.Series], str] = lambda row: row["group"],
) -> dict[str, list[dict[str, Any]]]:
    """Completed cells paired across `axis` (base vs other value), every other param, the
    and the recipe equal (same seed): {"pairs", "summary"}, delta = error(other)
    - error(base). group_of names a pair's group."""
    runs = clean(runs)
    keys = [k for k in PARAM_KEYS if k != axis]
    keys += [k for k in ("recipe_label",) if k in runs and k != axis]
    others = [a for a in varying(runs, VARIANT_AXES) if a != axis]
    pairs, incomplete = [], []
    for _, twins in runs.fillna({k: "?" for k in keys}).groupby(keys, sort=True):
        on, off = twins[twins[axis] == base], twins[twins[axis] == other]
        if not len(on) or not len(off):
            continue
        a, b = on.iloc[0], off.iloc[0]
        context = " \u00b7 ".join(AXIS_NAMES[o] + text(a[o]) for o in others) or "all"
        if a["status"] != "completed" or b["status"] != "completed":
            sides = [
                "%s %s" % (side, row["status"])
                for side, row in ((base, a), (other, b))
                if row["status"] != "completed"
            ]
            incomplete.append(
                {
                    "group": group_of(a),
                    "context": context,
                    "what": " + ".join(sides),
                    "seed": a["seed"],
                }
            )
            continue
        na = [str(x) for x in (a["not_applicable"], b["not_applicable"]) if _has(x)]
        pairs.append(
            {
                "group": group_of(a),
                "seed": a["seed"],
                "on": a["final_test_err"],
                "off": b["final_test_err"],
                "delta": _sub(b["final_test_err"], a["final_test_err"]),
                "time_ratio": _div(b["epoch_s_median"], a["epoch_s_median"]),
                "context": context,
                "note": "%s: not applicable on %s" % (axis, a["device"])
                if any(axis in x for x in na)
                else "",
                "on_id": a["cell_id"],
                "off_id": b["cell_id"],
            }
        )
    return {"pairs": pairs, "summary": delta_summary(pairs, incomplete)}


def recipe_deltas(
    runs: pd.DataFrame, base: str = references.DEFAULT_RECIPE
) -> list[dict[str, Any]]:
    """Groups that differ only in recipe, paired per seed as the cuDNN/TF32 deltas are: one
    {"recipes": "bamos - lua", "pairs", "summary"} per other recipe run beside `base`, delta =
    error(other) - error(base). Cells with overrides are no recipe and are never paired."""
    runs = clean(runs)
    if "recipe_label" not in runs or not len(runs):
        return []
    names = sorted(set(runs["recipe_label"]) - {base})
    out = []
    for name in (n for n in names if "+overrides" not in n):
        if base not in set(runs["recipe_label"]):
            break
        part = runs[runs["recipe_label"].isin([base, name])]
        deltas = paired_deltas(part, "recipe_label", base, name, group_of=_without_recipe)
        if deltas["summary"]:
            out.append(dict(deltas, recipes="%s \u2212 %s" % (name, base), other=name, base=base))
    return out


def _without_recipe(row: pd.Series) -> str:
    """A group label without its recipe part (labels.add_labels puts it last)."""
    return str(row["group"]).split(" \u00b7 " + AXIS_NAMES["recipe_label"], 1)[0]


def delta_summary(
    pairs: list[dict[str, Any]], incomplete: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per group x context: the deltas' statistics and, in the note, the pairs that
    could not be formed ('1 pair incomplete: off diverged (seed 2)')."""
    frame = pd.DataFrame(pairs, columns=["group", "context", "delta", "time_ratio", "note"])
    gaps = pd.DataFrame(incomplete, columns=["group", "context", "what", "seed"])
    keys = sorted(
        set(zip(frame["group"], frame["context"])) | set(zip(gaps["group"], gaps["context"]))
    )
    summary = []
    for group, context in keys:
        part = frame[(frame["group"] == group) & (frame["context"] == context)]
        missing = gaps[(gaps["group"] == group) & (gaps["context"] == context)]
        mean, std, n = mean_std(part["delta"])
        deltas = finite(part["delta"])
        notes = sorted(set(part["note"]) - {""})
        if len(missing):
            notes.append(incomplete_text(missing))
        summary.append(
            {
                "group": group,
                "context": context,
                "n": n,
                "mean": mean,
                "std": std,
                "max_abs": max(abs(d) for d in deltas) if deltas else None,
                "time_ratio": mean_std(part["time_ratio"])[0],
                "note": "; ".join(notes),
                "incomplete": len(missing),
            }
        )
    return summary


def incomplete_text(missing: pd.DataFrame) -> str:
    """'3 pairs incomplete: off skipped (seeds 0, 1, 2); on failed (seed 1)'."""
    parts = []
    for what, rows in missing.groupby("what", sort=True):
        seeds = sorted(rows["seed"].map(text), key=lambda s: (not s.isdigit(), s.zfill(9)))
        parts.append("%s (seed%s %s)" % (what, "" if len(seeds) == 1 else "s", ", ".join(seeds)))
    n = len(missing)
    return "%d pair%s incomplete: %s" % (n, "" if n == 1 else "s", "; ".join(parts))


def canary_pairs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Each canary cell with its clean twin (same params, canary none), or None."""
    canaries = runs[runs["canary"].fillna("none") != "none"]
    keys = [k for k in PARAM_KEYS if k != "canary"]
    out = []
    for _, bug in canaries.iterrows():
        twin = runs[runs["canary"].fillna("none") == "none"]
        for key in keys:
            twin = twin[twin[key].fillna("?") == (bug[key] if _has(bug[key]) else "?")]
        out.append({"canary": bug, "clean": twin.iloc[0] if len(twin) else None})
    return out


def cost(runs: pd.DataFrame) -> dict[str, Any]:
    """Per group x variant: epoch time, img/s, peak memory, wall and GPU-hours; and totals."""
    # Cells that trained at least one epoch (a skipped cell records wall_s 0 and no epochs).
    ran = runs[runs["wall_s"].map(_isfinite) & (runs["epochs_done"].fillna(0) > 0)]
    rows = []
    for (group, variant), part in ran.groupby(["group", "variant"], sort=True):
        rows.append(
            {
                "group": group,
                "variant": variant,
                "n": len(part),
                "epoch_s": _median(part["epoch_s_median"]),
                "img_per_s": _median(part["img_per_s"]),
                "peak_mem_mb": max(finite(part["peak_mem_mb"]), default=None),
                "wall_h": sum(finite(part["wall_s"])) / 3600.0,
                "gpu_hours": sum(finite(part["gpu_hours"])),
                "device": ", ".join(sorted({text(d) for d in part["gpu"].fillna("CPU")})),
                # The step each cell ended with: a GPU group showing eager-nosync beside
                # cuda-graph holds a cell whose capture failed (summary.json says why).
                "step": ", ".join(sorted({text(m) for m in part["step_mode"].fillna("unknown")})),
                # cuDNN's algorithm choice (summary.json conv_kernels): the cells' top kernels.
                "conv": ", ".join(
                    sorted({k for t in part["conv_kernels"] if _has(t) for k in str(t).split("; ")})
                ),
            }
        )
    totals = {
        "wall_h": sum(finite(ran["wall_s"])) / 3600.0,
        "gpu_hours": sum(finite(ran["gpu_hours"])),
        "cells": len(ran),
    }
    return {"rows": rows, "totals": totals}


def predicted_vs_measured(
    runs: pd.DataFrame, predicted: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of (cell, predicted s, measured s, ratio) for cells with both numbers."""
    rows = []
    for _, run in runs.iterrows():
        guess = predicted.get(run["cell_id"])
        if guess is None:
            continue
        # Only a completed cell's wall time is the whole run the prediction is about.
        measured = run["wall_s"] if run["status"] == "completed" else None
        rows.append(
            {
                "cell_id": run["cell_id"],
                "predicted_s": guess["seconds"],
                "basis": guess["basis"],
                "measured_s": measured if _isfinite(measured) else None,
                "ratio": _div(measured, guess["seconds"]),
                "status": run["status"],
            }
        )
    return rows


def environments(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per distinct software/hardware identity that ran cells."""
    seen = runs[runs["torch_version"].notna()]
    rows: list[dict[str, Any]] = []
    if not len(seen):
        return rows
    for ident, part in seen.fillna({c: "\u2014" for c in IDENTITY_COLUMNS}).groupby(
        IDENTITY_COLUMNS, sort=True
    ):
        row = dict(zip(IDENTITY_COLUMNS, ident))
        row["cudnn_version"] = cudnn_text(row["cudnn_version"])
        row.update(
            {
                "cells": len(part),
                "statuses": status_counts(part, skip=()),
                "variants": ", ".join(sorted(part["variant"].unique())),
                "not_applicable": "; ".join(
                    sorted({str(x) for x in part["not_applicable"] if _has(x)})
                ),
            }
        )
        rows.append(row)
    return rows


def cudnn_text(version: str | float | None) -> str | float | None:
    """torch.backends.cudnn.version() as 'major.minor.patch (raw)': cuDNN 9 encodes
    major*10000 + minor*100 + patch, earlier releases major*1000 + minor*100 + patch."""
    try:
        raw = int(float(version))
    except (TypeError, ValueError):
        return version
    scale = 10000 if raw >= 90000 else 1000
    rest = raw % scale
    return "%d.%d.%d (%d)" % (raw // scale, rest // 100, rest % 100, raw)


def flag_mismatches(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Cells whose recorded flags contradict the requested cuDNN/TF32 setting (GPU only:
    on CPU both axes are recorded as not applicable)."""
    out = []
    for _, run in runs[runs["gpu"].notna()].iterrows():
        for axis, actual in (("cudnn", "actual_cudnn_enabled"), ("tf32", "actual_tf32")):
            want, got = run[axis], run[actual]
            if want in ("on", "off") and isinstance(got, bool) and got != (want == "on"):
                out.append(
                    {
                        "cell_id": run["cell_id"],
                        "axis": axis,
                        "requested": want,
                        "recorded": "on" if got else "off",
                    }
                )
    return out


# How the header names each verdict: (one, several).
VERDICT_WORDS = {
    "reproduced": ("reproduced", "reproduced"),
    "reproduced-offset": ("reproduced (offset detected)", "reproduced (offset detected)"),
    "differs": ("differs", "differ"),
    "not-reproduced": ("not reproduced (diverged seeds)", "not reproduced (diverged seeds)"),
    "inconclusive": ("inconclusive", "inconclusive"),
    "no-verdict": ("without verdict", "without verdict"),
}


def count_text(counts: Mapping[str, int]) -> str:
    """{"differs": 2, "reproduced": 1} -> '1 reproduced, 2 differ' (VERDICTS' order)."""
    return ", ".join(
        "%d %s" % (counts[name], VERDICT_WORDS[name][counts[name] != 1])
        for name in references.VERDICTS
        if counts.get(name)
    )


def verdict_counts(comparison: dict[str, Any], envs: pd.DataFrame) -> dict[str, Any]:
    """Headline counts: comparison verdicts per published source, final apart from
    provisional; and gradient-stage verdicts of the clean environments apart from the canary
    environments, whose "fail" is the designed detection (a canary env that does not fail is a
    harness failure)."""
    final: dict[str, dict[str, int]] = {}
    provisional: dict[str, dict[str, int]] = {}
    sources: list[str] = []
    for block in comparison["blocks"]:
        for ref in block["refs"]:
            if ref["source"] not in sources:
                sources.append(ref["source"])
            counts = (provisional if ref["provisional"] else final).setdefault(ref["source"], {})
            counts[ref["verdict_name"]] = counts.get(ref["verdict_name"], 0) + 1
    # The paper first, then the other sources in the published table's order.
    order = list(references.published()["source"].drop_duplicates())
    sources.sort(key=lambda s: order.index(s) if s in order else len(order))
    is_canary = envs["canary"].fillna("none") != "none"
    return {
        "comparisons": [
            {
                "source": source,
                "final": count_text(final.get(source, {})),
                "provisional": count_text(provisional.get(source, {})),
            }
            for source in sources
        ],
        "provisional": sum(1 for b in comparison["blocks"] if b["provisional"]),
        "not_compared": len(comparison["not_compared"]),
        "stage": stage_counts(envs[~is_canary]),
        "canary": canary_counts(envs[is_canary]),
    }


def stage_counts(envs: pd.DataFrame) -> dict[str, int]:
    stage = envs[envs["status"] == "completed"]["verdict"].value_counts().to_dict()
    missing = int((envs["status"] != "completed").sum())
    if missing:
        stage["not run / unreadable"] = missing
    return stage


def canary_counts(envs: pd.DataFrame) -> dict[str, int]:
    """{"detected": n, "NOT detected (harness failure)": n, "not run / unreadable": n}."""
    done = envs[envs["status"] == "completed"]
    counts = {
        "detected": int((done["verdict"] == "fail").sum()),
        "NOT detected (harness failure)": int((done["verdict"] != "fail").sum()),
        "not run / unreadable": int((envs["status"] != "completed").sum()),
    }
    return {k: v for k, v in counts.items() if v}


def identities(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Distinct values of a few identity columns, for the header."""
    return {
        col: sorted({str(v) for v in runs[col] if _has(v)})
        for col in ("git_sha", "host", "dataset_identity", "gpu", "torch_version")
    }


def _has(value: Any) -> bool:
    return value is not None and value == value and value != ""


def _sub(a: Any, b: Any) -> float | None:
    return float(a) - float(b) if _isfinite(a) and _isfinite(b) else None


def _div(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if _isfinite(a) and _isfinite(b) and float(b) else None


def _median(values: Iterable[Any]) -> float | None:
    values = sorted(finite(values))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
