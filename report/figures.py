"""Figures as base64 PNG data URIs, so the page carries them and needs no network or files.

Each function takes already-aggregated numbers and returns a data URI, or None when there is
nothing to draw (the template then says so in words).
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import matplotlib

matplotlib.use("Agg")  # headless hosts (CI, Snakemake jobs) have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
DPI = 100
CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
CHAINER_STYLE = {"2017": ("#222222", ":"), "2016": ("#888888", ":")}
FP32_PASS = 1e-4  # DESIGN "Gradient stage": fp32 pass threshold on the relative error


def png(fig: Figure) -> str:
    """Encode and close a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def palette(names: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """A distinct colour per name (variants, envs); pass every name of the page at once so a
    variant keeps its colour across figures."""
    names = list(names)
    colors = sns.color_palette("tab10" if len(names) <= 10 else "husl", max(len(names), 1))
    return dict(zip(names, colors))


def heatmap(hm: dict[str, Any]) -> str | None:
    """Final test error, group x variant. Colour = difference from the row's median (the
    question is where environments differ; rows differ by model and data anyway)."""
    groups, variants = hm["groups"], hm["variants"]
    if not groups or not any(e["mean"] is not None for row in hm["rows"] for e in row):
        return None
    means = np.array(
        [[np.nan if e["mean"] is None else e["mean"] for e in row] for row in hm["rows"]]
    )
    relative = len(variants) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any completed entry
        color = means - np.nanmedian(means, axis=1, keepdims=True) if relative else means
    with np.errstate(all="ignore"):
        color = np.where(np.isnan(means), np.nan, color)
    annot = [[_heat_text(e) for e in row] for row in hm["rows"]]
    width = min(3.0 + 1.9 * len(variants), 22)
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.55 * len(groups)))
    ax.set_facecolor("#e6e6e6")  # no completed seed: grey, with the status counts written
    span = np.nanmax(np.abs(color)) if relative and np.isfinite(color).any() else None
    with warnings.catch_warnings():
        # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11 marks as deprecated
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(
            color,
            ax=ax,
            annot=np.array(annot, dtype=object),
            fmt="",
            cbar=True,
            cmap="vlag" if relative else "rocket_r",
            center=0 if relative else None,
            vmin=-span if span else None,
            vmax=span if span else None,
            linewidths=1,
            linecolor="white",
            annot_kws={"fontsize": 8},
            xticklabels=variants,
            yticklabels=groups,
            cbar_kws={"label": "points vs row median" if relative else "test error (%)"},
        )
    ax.grid(False)
    for i, row in enumerate(hm["rows"]):
        for j, entry in enumerate(row):
            if entry["mean"] is None:
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    _heat_text(entry),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="#555555",
                )
    ax.tick_params(axis="x", rotation=20)
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.set_xlabel("")
    ax.set_ylabel("")
    return png(fig)


def _heat_text(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return entry["others"] or "not in matrix"
    text = "%.2f" % entry["mean"]
    if entry["std"] is not None:
        text += " \u00b1 %.2f" % entry["std"]
    return "%s\n%d/%d seeds" % (text, entry["n"], entry["expected"])


def learning_curves(
    curves: pd.DataFrame,
    colors: Mapping[str, tuple[float, float, float]],
    dataset: str,
    chainer: pd.DataFrame | None = None,
) -> str | None:
    """Train loss and test error per epoch. Completed cells: one line per variant (mean over
    seeds, band = min..max); unfinished cells (running, diverged, failed): one thin line each,
    so a cell that stops early does not bend the mean. cuDNN off dashed. chainer: digitized
    reference curves to overlay."""
    if not len(curves):
        return None
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 3.8))
    curves = curves.replace([np.inf, -np.inf], np.nan)
    done = curves[curves["status"] == "completed"]
    stats = done.groupby(["variant", "epoch"])[["train_loss", "test_err"]].agg(
        ["mean", "min", "max"]
    )
    shown = sorted(curves["variant"].unique())
    for variant in shown:
        style = "--" if "cuDNN off" in variant else "-"
        for ax, col in ((ax_loss, "train_loss"), (ax_err, "test_err")):
            if variant in stats.index.get_level_values(0):
                part = stats.loc[variant]
                ax.plot(part.index, part[(col, "mean")], color=colors[variant], lw=1.4, ls=style)
                ax.fill_between(
                    part.index,
                    part[(col, "min")],
                    part[(col, "max")],
                    color=colors[variant],
                    alpha=0.15,
                    lw=0,
                )
            for _, cell in curves[
                (curves["variant"] == variant) & (curves["status"] != "completed")
            ].groupby("cell_id"):
                ax.plot(cell["epoch"], cell[col], color=colors[variant], lw=0.8, ls=":")
                end = cell[cell[col].notna()].tail(1)
                marker = "x" if cell["status"].iloc[0] == "diverged" else ">"
                ax.plot(end["epoch"], end[col], marker=marker, color=colors[variant], ms=6)
    handles = [
        Line2D([], [], color=colors[v], ls="--" if "cuDNN off" in v else "-", label=v)
        for v in shown
    ]
    if (curves["status"] != "completed").any():
        handles.append(
            Line2D(
                [],
                [],
                color="#555555",
                ls=":",
                marker="x",
                label="single unfinished cell (\u00d7 diverged, \u25b8 running)",
            )
        )
    if chainer is not None:
        for version, ref in chainer.groupby("version"):
            color, style = CHAINER_STYLE.get(version, ("#444444", ":"))
            ax_loss.plot(ref["epoch"], ref["main_loss"], color=color, ls=style, lw=1.2)
            ax_err.plot(ref["epoch"], ref["test_error_pct"], color=color, ls=style, lw=1.2)
            handles.append(
                Line2D(
                    [], [], color=color, ls=style, label="chainer t-hanya %s (digitized)" % version
                )
            )
    _chance(ax_loss, ax_err, dataset)
    for ax, col, title in (
        (ax_loss, "train_loss", "training loss"),
        (ax_err, "test_err", "test error (%)"),
    ):
        _y_scale(ax, curves[col])
        _epoch_axis(ax)
        ax.set_title(title, fontsize=10)
    fig.subplots_adjust(wspace=0.22)  # fixed: tight_layout costs a full text layout pass
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(3, len(handles)),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return png(fig)


def _chance(ax_loss: Axes, ax_err: Axes, dataset: str) -> None:
    """Chance level (uniform prediction): where the 2017 bug left bamos' curves."""
    classes = CLASSES.get(dataset)
    if classes:
        ax_loss.axhline(math.log(classes), color="#b0b0b0", lw=0.8, ls="-.")
        ax_err.axhline(100.0 * (1 - 1.0 / classes), color="#b0b0b0", lw=0.8, ls="-.")


def _y_scale(ax: Axes, values: pd.Series) -> None:
    """Log scale when the values span a factor of 5 or more (a full run: the late epochs, where
    environments differ, stay readable); linear for a short or flat run. Log ticks are plain
    numbers (1, 2, 5, 10, ...), without minor labels that each cost a text layout."""
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values) or values.max() / values.min() < 5:
        return
    ax.set_yscale("log")
    ticks = [m * 10.0**e for e in range(-4, 3) for m in (1, 2, 5)]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _epoch_axis(ax: Axes) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def canary(bug: pd.DataFrame, clean: pd.DataFrame | None, dataset: str) -> str | None:
    """Clean vs injected-bug cell: loss and error side by side."""
    if not len(bug) and (clean is None or not len(clean)):
        return None
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 3.4))
    for frame, label, color in (
        (clean, "clean", "#1f77b4"),
        (bug, "canary (injected bug)", "#d62728"),
    ):
        if frame is None or not len(frame):
            continue
        frame = frame.replace([np.inf, -np.inf], np.nan)
        ax_loss.plot(
            frame["epoch"],
            frame["train_loss"],
            color=color,
            lw=1.6,
            label=label,
            marker="o" if len(frame) < 30 else None,
            ms=3,
        )
        ax_err.plot(
            frame["epoch"],
            frame["test_err"],
            color=color,
            lw=1.6,
            marker="o" if len(frame) < 30 else None,
            ms=3,
        )
    _chance(ax_loss, ax_err, dataset)
    for ax, title in ((ax_loss, "training loss"), (ax_err, "test error (%)")):
        _epoch_axis(ax)
        ax.set_title(title, fontsize=10)
    ax_err.set_ylim(0, 100)
    ax_loss.legend(fontsize=8)
    fig.subplots_adjust(wspace=0.22)  # fixed: tight_layout costs a full text layout pass
    return png(fig)


def layer_errors(layers: pd.DataFrame, envs: pd.DataFrame) -> str | None:
    """Relative gradient error per layer (weight and input) for each env, log scale."""
    layers = layers[layers["rel_err_weight"].notna() | layers["rel_err_input"].notna()]
    if not len(layers):
        return None
    names = sorted(layers["env_id"].unique())
    colors = palette(names)
    verdicts = dict(zip(envs["env_id"], envs["verdict"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, col, title in (
        (axes[0], "rel_err_weight", "weight gradient"),
        (axes[1], "rel_err_input", "input gradient"),
    ):
        for env_id in names:
            part = layers[layers["env_id"] == env_id].sort_values("layer_index")
            values = part[col].where(part[col] > 0)
            ax.plot(
                part["layer_index"],
                values,
                marker=".",
                ms=4,
                lw=0.9,
                color=colors[env_id],
                label="%s (%s)" % (env_id, verdicts.get(env_id)) if ax is axes[0] else None,
            )
        ax.axhline(FP32_PASS, color="#444444", ls="--", lw=0.8)
        ax.text(0, FP32_PASS * 1.3, "fp32 pass \u2264 1e-4", fontsize=7, color="#444444")
        ax.set_yscale("log")
        ax.set_xlabel("layer (forward order)")
        ax.set_title(title + ": \u2016g \u2212 g_ref\u2016 / \u2016g_ref\u2016", fontsize=10)
    fig.subplots_adjust(wspace=0.22)  # fixed: tight_layout costs a full text layout pass
    fig.legend(
        loc="upper center",
        ncol=min(3, len(names)),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return png(fig)


def epoch_times(rows: list[dict[str, Any]]) -> str | None:
    """Median epoch time per group x variant (horizontal bars)."""
    rows = [r for r in rows if r["epoch_s"] is not None]
    if not rows:
        return None
    variants = sorted({r["variant"] for r in rows})
    colors = palette(variants)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.28 * len(rows)))
    labels = ["%s | %s" % (r["group"], r["variant"]) for r in rows]
    ax.barh(
        range(len(rows)), [r["epoch_s"] for r in rows], color=[colors[r["variant"]] for r in rows]
    )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("median epoch time (s)")
    fig.subplots_adjust(wspace=0.22)  # fixed: tight_layout costs a full text layout pass
    return png(fig)


def predicted_vs_measured(rows: list[dict[str, Any]]) -> str | None:
    """Scatter of predicted vs measured wall time, with the identity line."""
    rows = [r for r in rows if r["measured_s"] and r["predicted_s"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    x = [r["predicted_s"] / 3600.0 for r in rows]
    y = [r["measured_s"] / 3600.0 for r in rows]
    ax.scatter(x, y, s=14)
    lo, hi = min(x + y) * 0.8, max(x + y) * 1.25
    ax.plot([lo, hi], [lo, hi], color="#888888", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted (h)")
    ax.set_ylabel("measured (h)")
    fig.subplots_adjust(wspace=0.22)  # fixed: tight_layout costs a full text layout pass
    return png(fig)
