"""The numbers of each report section, computed from the runs table (labels.add_labels applied).

Everything the page prints is computed here from runs.csv's columns, so a test can recompute it
from the CSV. Canary cells (an injected bug) never enter the heatmap, the comparison or the
axis deltas: they have their own panel.
"""

import math

import pandas as pd

from report import references
from report.aggregate import IDENTITY_COLUMNS
from report.labels import AXIS_NAMES, VARIANT_AXES, text, varying
from report.study import PARAM_KEYS


def clean(runs):
    """Runs without an injected bug."""
    return runs[runs["canary"].fillna("none") == "none"]


def finite(values):
    return [float(v) for v in values if v is not None and _isfinite(v)]


def _isfinite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def mean_std(values):
    """(mean, sample std or None, n) of the finite values."""
    values = finite(values)
    n = len(values)
    if not n:
        return None, None, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 else None
    return mean, std, n


def status_counts(frame, skip=("completed",)):
    """'2 failed, 1 missing' for the statuses not in skip."""
    counts = frame["status"].value_counts()
    return ", ".join("%d %s" % (counts[s], s) for s in sorted(counts.index) if s not in skip)


def heatmap(runs):
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


def seeds_text(cell):
    """'2 of 3 seeds (1 diverged)': every seed of a group x variant, not only the completed."""
    done = int((cell["status"] == "completed").sum())
    others = status_counts(cell)
    return "%d of %d seed%s" % (done, len(cell), "" if len(cell) == 1 else "s") + (
        " (%s)" % others if others else ""
    )


def comparison(runs, tolerance, alpha=references.ALPHA):
    """Published comparison: {"blocks": [{group, variant, n, expected, seeds, mean, std,
    provisional, gradient_fail, refs: [...]}], "not_compared": [{group, variant, n, seeds,
    mean, std, reason}]}.

    The verdict uses the completed seeds, but every seed counts: a diverged seed of a
    comparable group means "not reproduced" (non-convergence is the failure this harness is
    for), unfinished seeds make the verdict provisional, and a group with no completed seed is
    listed as not compared with its seeds' states.
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
        refs = published_rows(table, done)[0]
        diverged = int((cell["status"] == "diverged").sum())
        pending = status_counts(cell[cell["status"].isin(PENDING)], skip=())
        compared = []
        for _, ref in refs.iterrows():
            verdict = references.verdict(
                done["final_test_err"], float(ref["test_error_pct"]), tolerance, alpha
            )
            verdict = seed_states_verdict(verdict, diverged, len(cell), pending)
            compared.append(
                {
                    "source": ref["source"],
                    "published": float(ref["test_error_pct"]),
                    "citation": ref["citation"],
                    "delta": verdict["delta"],
                    "verdict": verdict["text"],
                    "verdict_class": verdict["class"],
                    "diverged": bool(diverged),
                    "p_equivalent": verdict["p_equivalent"],
                    "p_different": verdict["p_different"],
                }
            )
        blocks.append(
            dict(
                base,
                refs=compared,
                provisional=pending or None,
                # The gradient stage of these cells' environment: a failed one makes every
                # number of the cells suspect, so the comparison says so beside the verdict.
                gradient_fail="fail" in set(cell["gradcheck_verdict"].dropna()),
            )
        )
    return {"blocks": blocks, "not_compared": not_compared}


def eligibility(table, cell, done):
    """Why a group x variant gets no published comparison, or None."""
    if not len(done):
        return "no completed seed: %s" % status_counts(cell)
    # The data's identity comes first: it is the reason that no reference could lift.
    why = references.not_comparable(done)
    if why:
        return why
    refs, variant = published_rows(table, done)
    if not len(refs):
        first = done.iloc[0]
        return "no published number for %s on %s (augmentation %s)%s" % (
            first["model"],
            first["dataset"],
            first["augment"],
            ""
            if variant is None
            else " other than the paper's, which uses another recipe: " + variant,
        )
    return None


def published_rows(table, done):
    """(rows, variant reason): the published rows this group is compared with."""
    first = done.iloc[0]
    refs = references.references_for(table, first["model"], first["dataset"], first["augment"])
    return references.rows_for(refs, done)


def seed_states_verdict(verdict, diverged, expected, pending):
    """The statistical verdict of the completed seeds, overruled by a diverged seed (class
    fail) and marked provisional while seeds are unfinished."""
    verdict = dict(verdict)
    if diverged:
        verdict["class"] = "fail"
        verdict["text"] = "not reproduced: %d of %d seeds diverged; completed seeds: %s" % (
            diverged,
            expected,
            verdict["text"],
        )
    if pending:
        verdict["text"] += " (provisional: %s)" % pending
    return verdict


def version_deltas(runs):
    """The torch axis as pairs: each version against the first (in sorted order), every other
    parameter equal (same seed); [{"base", "other", "pairs", "summary"}], delta =
    error(other) - error(base). Empty when the study has one torch version."""
    versions = sorted({str(v) for v in clean(runs)["torch"].dropna()})
    out = []
    for other in versions[1:]:
        d = axis_deltas(runs, "torch", on=versions[0], off=other)
        out.append(dict(d, base=versions[0], other=other))
    return out


def axis_deltas(runs, axis, on="on", off="off"):
    """Completed cells paired across one on/off axis, all other params equal (same seed).

    Returns {"pairs": [...], "summary": [...]}; delta = error(off) - error(on), in points.
    `on` and `off` name the two values compared (the torch axis compares two versions).
    A pair with a side that did not complete (diverged, failed, skipped, ...) has no delta but
    is named in the summary's note: a setting that breaks training is what this section is for.
    """
    runs = clean(runs)
    keys = [k for k in PARAM_KEYS if k != axis]
    others = [a for a in varying(runs, VARIANT_AXES) if a != axis]
    pairs, incomplete = [], []
    for _, twins in runs.fillna({k: "?" for k in keys}).groupby(keys, sort=True):
        first, second = twins[twins[axis] == on], twins[twins[axis] == off]
        if not len(first) or not len(second):
            continue
        a, b = first.iloc[0], second.iloc[0]
        context = " \u00b7 ".join(AXIS_NAMES[o] + text(a[o]) for o in others) or "all"
        if a["status"] != "completed" or b["status"] != "completed":
            sides = [
                "%s %s" % (side, row["status"])
                for side, row in (("on", a), ("off", b))
                if row["status"] != "completed"
            ]
            incomplete.append(
                {
                    "group": a["group"],
                    "context": context,
                    "what": " + ".join(sides),
                    "seed": a["seed"],
                }
            )
            continue
        na = [str(x) for x in (a["not_applicable"], b["not_applicable"]) if _has(x)]
        pairs.append(
            {
                "group": a["group"],
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


def delta_summary(pairs, incomplete):
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


def incomplete_text(missing):
    """'3 pairs incomplete: off skipped (seeds 0, 1, 2); on failed (seed 1)'."""
    parts = []
    for what, rows in missing.groupby("what", sort=True):
        seeds = sorted(rows["seed"].map(text), key=lambda s: (not s.isdigit(), s.zfill(9)))
        parts.append("%s (seed%s %s)" % (what, "" if len(seeds) == 1 else "s", ", ".join(seeds)))
    n = len(missing)
    return "%d pair%s incomplete: %s" % (n, "" if n == 1 else "s", "; ".join(parts))


def canary_pairs(runs):
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


def cost(runs):
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


def predicted_vs_measured(runs, predicted):
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


def environments(runs):
    """One row per distinct software/hardware identity that ran cells."""
    seen = runs[runs["torch_version"].notna()]
    rows = []
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


def cudnn_text(version):
    """torch.backends.cudnn.version() as 'major.minor.patch (raw)': cuDNN 9 encodes
    major*10000 + minor*100 + patch, earlier releases major*1000 + minor*100 + patch."""
    try:
        raw = int(float(version))
    except (TypeError, ValueError):
        return version
    scale = 10000 if raw >= 90000 else 1000
    rest = raw % scale
    return "%d.%d.%d (%d)" % (raw // scale, rest // 100, rest % 100, raw)


def flag_mismatches(runs):
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


def verdict_counts(comparison, envs):
    """Headline counts: comparison verdicts, and gradient-stage verdicts of the clean
    environments apart from the canary environments, whose "fail" is the designed detection
    (a canary env that does not fail is a harness failure)."""
    classes = {"pass": "reproduced", "fail": "differ", "warn": "inconclusive", "none": "no verdict"}
    compared = {}
    for block in comparison["blocks"]:
        for ref in block["refs"]:
            label = (
                "not reproduced (diverged seeds)"
                if ref["diverged"]
                else classes[ref["verdict_class"]]
            )
            compared[label] = compared.get(label, 0) + 1
    is_canary = envs["canary"].fillna("none") != "none"
    order = [
        "reproduced",
        "differ",
        "not reproduced (diverged seeds)",
        "inconclusive",
        "no verdict",
    ]
    return {
        "comparisons": {k: compared[k] for k in order if k in compared},
        "provisional": sum(1 for b in comparison["blocks"] if b["provisional"]),
        "not_compared": len(comparison["not_compared"]),
        "stage": stage_counts(envs[~is_canary]),
        "canary": canary_counts(envs[is_canary]),
    }


def stage_counts(envs):
    stage = envs[envs["status"] == "completed"]["verdict"].value_counts().to_dict()
    missing = int((envs["status"] != "completed").sum())
    if missing:
        stage["not run / unreadable"] = missing
    return stage


def canary_counts(envs):
    """{"detected": n, "NOT detected (harness failure)": n, "not run / unreadable": n}."""
    done = envs[envs["status"] == "completed"]
    counts = {
        "detected": int((done["verdict"] == "fail").sum()),
        "NOT detected (harness failure)": int((done["verdict"] != "fail").sum()),
        "not run / unreadable": int((envs["status"] != "completed").sum()),
    }
    return {k: v for k, v in counts.items() if v}


def identities(runs):
    """Distinct values of a few identity columns, for the header."""
    return {
        col: sorted({str(v) for v in runs[col] if _has(v)})
        for col in ("git_sha", "host", "dataset_identity", "gpu", "torch_version")
    }


def _has(value):
    return value is not None and value == value and value != ""


def _sub(a, b):
    return float(a) - float(b) if _isfinite(a) and _isfinite(b) else None


def _div(a, b):
    return float(a) / float(b) if _isfinite(a) and _isfinite(b) and float(b) else None


def _median(values):
    values = sorted(finite(values))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
