"""write_report: the aggregate tables -> one self-contained HTML page (+ the CSVs beside it).

The page's sections follow DESIGN.md "Report". Every number comes from runs.csv / curves.csv /
envs.csv (through report.sections), figures are embedded PNGs, and nothing is fetched when the
page is opened.
"""

from __future__ import annotations

import datetime
import os
import urllib.parse
from typing import TYPE_CHECKING, Any, Mapping

import jinja2

from report import aggregate, atomic, figures, predicted, references, sections
from report.labels import add_labels

if TYPE_CHECKING:
    import pandas as pd

    from report.study import Study

COMPARISONS_CSV = "comparisons.csv"  # sections.COMPARISON_COLUMNS, beside runs.csv
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
IDENTITY_NOTES = {
    "official": None,
    "cifar10-jpeg75": "CIFAR-10 rebuilt offline from JPEG quality-75 images (lossy): errors on "
    "it are NOT comparable with published numbers, so no paper comparison is "
    "made for these cells.",
    "synthetic": "Synthetic (generated) data: these numbers test the harness, not DenseNet; no "
    "published comparison is possible.",
    "unknown": "Data of unknown identity (checksums match no known release): not comparable "
    "with published numbers.",
}


def write_report(
    study: Study,
    tables: aggregate.Tables,
    out_dir: str,
    tolerance: float = references.DEFAULT_TOLERANCE,
    predicted_path: str | None = None,
) -> str:
    """Write report.html, runs.csv, comparisons.csv, curves.csv, envs.csv, layers.csv into
    out_dir (each atomically); returns the path of report.html."""
    os.makedirs(out_dir, exist_ok=True)
    # runs.csv carries the page's group and variant labels, so its rows can be matched to it.
    tables = aggregate.Tables(add_labels(tables.runs), tables.curves, tables.envs, tables.layers)
    context = build_context(study, tables, out_dir, tolerance, predicted_path)
    html = environment().get_template("report.html.j2").render(**context)
    aggregate.write_tables(tables, out_dir)
    atomic.write_frame(
        os.path.join(out_dir, COMPARISONS_CSV), sections.comparison_table(context["comparison"])
    )
    path = os.path.join(out_dir, "report.html")
    atomic.write_text(path, html)  # last: the page never refers to CSVs that are not there
    return path


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        pct=fmt_pct, num=fmt_num, sci=fmt_sci, pm=fmt_pm, short=fmt_short, hours=fmt_hours
    )
    return env


def build_context(
    study: Study,
    tables: aggregate.Tables,
    out_dir: str,
    tolerance: float,
    predicted_path: str | None = None,
) -> dict[str, Any]:
    """Everything the template shows, as plain values."""
    runs = tables.runs if "variant" in tables.runs else add_labels(tables.runs)
    labels = runs.set_index("cell_id")[["group", "variant"]]
    curves = tables.curves.join(labels, on="cell_id")
    hm = sections.heatmap(runs)
    if predicted_path is None and study.manifest_path:
        predicted_path = os.path.join(os.path.dirname(study.manifest_path), "predicted_cost.json")
    guesses, predicted_note = predicted.load(predicted_path)
    pvm = sections.predicted_vs_measured(runs, guesses)
    ratios = sorted(p["ratio"] for p in pvm if p["ratio"] is not None)
    ratio = None
    if ratios:
        ratio = {
            "n": len(ratios),
            "median": sections._median(ratios),
            "min": ratios[0],
            "max": ratios[-1],
        }
    cost = sections.cost(runs)
    ident = sections.identities(runs)
    comparison = sections.comparison(runs, tolerance)
    return {
        "study": study,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "ident": ident,
        "banners": banners(study, ident["dataset_identity"], runs),
        "counts": runs["status"].value_counts().to_dict(),
        "statuses": aggregate.STATUSES,
        "n_cells": len(runs),
        "environments": sections.environments(runs),
        "mismatches": sections.flag_mismatches(runs),
        "heatmap": hm,
        "heatmap_png": figures.heatmap(hm),
        "comparison": comparison,
        "tolerance": tolerance,
        "verdicts": sections.verdict_counts(comparison, tables.envs),
        "alpha": references.ALPHA,
        "curves": curve_panels(runs, curves, figures.palette(sorted(runs["variant"].unique()))),
        "deltas": {axis: sections.axis_deltas(runs, axis) for axis in ("cudnn", "tf32")},
        "version_deltas": sections.version_deltas(runs),
        "recipe_deltas": sections.recipe_deltas(runs),
        "verdict_names": list(references.VERDICTS),
        "grad_envs": grad_envs(tables.envs, runs, out_dir),
        "layers_png": figures.layer_errors(tables.layers, tables.envs),
        "canaries": canary_panels(runs, curves, tables.envs),
        "cost": cost,
        "cost_png": figures.epoch_times(cost["rows"]),
        "predicted": pvm,
        "predicted_ratio": ratio,
        "predicted_note": predicted_note,
        "predicted_png": figures.predicted_vs_measured(pvm),
        "cells": cell_rows(runs, out_dir),
    }


# A cell has data of some identity once it has trained (or is training): these must say which.
TRAINED = ("completed", "diverged", "running")


def banners(study: Study, identities: list[str], runs: pd.DataFrame) -> list[tuple[str, str]]:
    """Loud notices on the data's identity: the first thing on the page."""
    out = []
    if study.dataset_fallback:
        out.append(("danger", "Dataset fallback: %s" % study.dataset_fallback))
    for identity in identities:
        note = IDENTITY_NOTES.get(identity, IDENTITY_NOTES["unknown"])
        if note:
            count = int((runs["dataset_identity"] == identity).sum())
            cells = "%d cell%s" % (count, "" if count == 1 else "s")
            out.append(("danger", "Dataset identity %s (%s): %s" % (identity, cells, note)))
    trained = runs[runs["status"].isin(TRAINED)]
    unidentified = int(trained["dataset_identity"].isna().sum())
    if not identities:
        out.append(
            (
                "warn",
                "No cell has recorded its dataset identity yet: nothing on this "
                "page is a paper comparison.",
            )
        )
    elif unidentified:
        out.append(
            (
                "warn",
                "%d cell%s with results recorded no dataset identity: not compared with "
                "published numbers." % (unidentified, "" if unidentified == 1 else "s"),
            )
        )
    elif identities == ["official"]:
        out.append(("ok", "All cells trained on the official CIFAR files (checksums verified)."))
    return out


def curve_panels(
    runs: pd.DataFrame, curves: pd.DataFrame, colors: Mapping[str, tuple[float, float, float]]
) -> list[dict[str, Any]]:
    """One learning-curve figure per group (canary cells excluded: they have their panel)."""
    clean = sections.clean(runs)
    chainer = references.chainer_curves()
    panels = []
    for group, cells in clean.groupby("group", sort=True):
        first = cells.iloc[0]
        part = curves[curves["cell_id"].isin(cells["cell_id"])]
        applies = all(first[k] == v for k, v in references.CHAINER_CELLS.items())
        why_not = chainer_mismatch(cells) if applies else None
        overlay = applies and not why_not
        panels.append(
            {
                "group": group,
                "n": len(cells),
                "with_curves": part["cell_id"].nunique(),
                "others": sections.status_counts(cells, skip=("completed", "running", "diverged")),
                "chainer": overlay,
                "chainer_note": why_not,
                "png": figures.learning_curves(
                    part, colors, first["dataset"], chainer if overlay else None
                ),
            }
        )
    return panels


def chainer_mismatch(cells: pd.DataFrame) -> str | None:
    """Why the chainer curves (300 epochs, official CIFAR-10) are not drawn beside these
    cells, or None: every cell must be of the paper protocol, and every cell that has trained
    must have recorded the official data."""
    protocols = sorted({str(p) for p in cells["protocol"].fillna("?")})
    epochs = sorted({int(e) for e in cells["epochs_planned"].dropna()})
    trained = cells[cells["status"].isin(TRAINED)]
    identities = sorted({str(i) for i in trained["dataset_identity"].fillna("unidentified")})
    parts = []
    if protocols != ["paper"] or epochs and epochs != [references.PAPER_EPOCHS]:
        parts.append(
            "protocol %s (%s epochs)" % ("/".join(protocols), "/".join(map(str, epochs)) or "?")
        )
    if identities and identities != [references.COMPARABLE_IDENTITY]:
        parts.append("%s data" % "/".join(identities))
    # The curves are the chainer recipe's reference, as its rows are (references.rows_for).
    recipes = sorted({str(r) for r in cells.get("recipe_label", cells["recipe"]).fillna("lua")})
    recipe = "" if recipes == ["chainer"] else " with recipe %s" % "/".join(recipes)
    if not parts and not recipe:
        return None
    return (
        "our cells: %s%s; the reference is the chainer recipe, 300 epochs on the official "
        "CIFAR-10" % (" on ".join(parts) or "paper protocol", recipe)
    )


def canary_panels(
    runs: pd.DataFrame, curves: pd.DataFrame, envs: pd.DataFrame
) -> list[dict[str, Any]]:
    verdicts = envs.set_index("env_id")["verdict"].to_dict() if len(envs) else {}
    panels = []
    for pair in sections.canary_pairs(runs):
        bug, clean = pair["canary"], pair["clean"]
        bug_curve = curves[curves["cell_id"] == bug["cell_id"]]
        clean_curve = None if clean is None else curves[curves["cell_id"] == clean["cell_id"]]
        panels.append(
            {
                "bug": plain(bug),
                "clean": None if clean is None else plain(clean),
                "png": figures.canary(bug_curve, clean_curve, bug["dataset"]),
                "bug_verdict": bug["gradcheck_verdict"],
                "clean_verdict": None if clean is None else clean["gradcheck_verdict"],
                "env_verdicts": verdicts,
            }
        )
    return panels


def grad_envs(envs: pd.DataFrame, runs: pd.DataFrame, out_dir: str) -> list[dict[str, Any]]:
    """Gradient-stage rows with the cells that ran in each env and links to its files."""
    rows = []
    for _, env in envs.iterrows():
        cells = runs[runs["env_id"] == env["env_id"]]
        files = [f for f in (env["files"] or "").split(";") if f]
        rows.append(
            dict(
                plain(env),
                n_cells=len(cells),
                cell_statuses=sections.status_counts(cells, skip=()),
                links=[(name, link(os.path.join(env["path"], name), out_dir)) for name in files],
            )
        )
    return rows


def cell_rows(runs: pd.DataFrame, out_dir: str) -> list[dict[str, Any]]:
    """Per-cell table rows with relative links to the cell's files."""
    rows = []
    seed = runs["seed"].map(lambda s: int(s) if str(s).isdigit() else 1 << 30)
    runs = runs.assign(_seed=seed).sort_values(["group", "variant", "_seed", "cell_id"])
    for _, run in runs.iterrows():
        files = [f for f in (run["files"] or "").split(";") if f]
        links = [(name, link(os.path.join(run["path"], name), out_dir)) for name in files]
        rows.append(dict(plain(run), links=links))
    return rows


def plain(row: pd.Series) -> dict[str, Any]:
    """A table row as a dict with NaN as None, so the template never prints 'nan'."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def link(path: str, out_dir: str) -> str:
    """A relative URL from the report directory to path (the results tree moves as a whole)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
    return urllib.parse.quote(rel.replace(os.sep, "/"))


def fmt_pct(value: Any) -> str:
    return "\u2014" if not sections._isfinite(value) else "%.2f" % float(value)


def fmt_num(value: Any, digits: int = 1) -> str:
    if not sections._isfinite(value):
        return "\u2014"
    return "{:,.{d}f}".format(float(value), d=digits)


def fmt_hours(seconds: Any) -> str:
    return "\u2014" if not sections._isfinite(seconds) else "%.3f" % (float(seconds) / 3600.0)


def fmt_sci(value: Any) -> str:
    return "\u2014" if not sections._isfinite(value) else "%.2g" % float(value)


def fmt_pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "\u2014"
    return "%.2f" % mean + ("" if std is None else " \u00b1 %.2f" % std)


def fmt_short(value: Any, n: int = 12) -> str:
    text = "" if value is None or value != value else str(value)
    return text if len(text) <= n else text[:n] + "\u2026"
