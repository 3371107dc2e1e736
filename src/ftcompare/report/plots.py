"""Report figures (matplotlib, no display needed): accuracy against each cost, and validation curves."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ftcompare.report.axes import FIGURES
from ftcompare.report.records import CONFIG, SETTING
from ftcompare.report.tables import pareto_front

MAX_LABELS = 8
COLORS = {"full": "tab:blue", "frozen": "tab:green", "lora": "tab:orange", "gradual": "tab:purple"}  # the study's
OTHERS = ["tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
RANGES = {"tensor_memory_mib": "tensor_memory_first_stage_mib"}  # a shaded bar from the first stage to the peak


def _color(strategy: str) -> str:
    """The same colour for a strategy in every report; a strategy outside the study's four gets one from its name."""
    return COLORS.get(strategy, OTHERS[zlib.crc32(strategy.encode()) % len(OTHERS)])


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _err(value: float) -> float | None:
    return None if pd.isna(value) else value


def label_offsets(xs: pd.Series, ys: pd.Series, log_x: bool = False, near: float = 0.04) -> pd.Series:
    """Vertical offsets (points) for the points' labels: points within `near` of the axes' span of each other get
    their labels stacked (6, 17, 28, ...), so two strategies at one place stay readable."""
    x = np.log10(xs.astype(float)) if log_x else xs.astype(float)
    y = ys.astype(float)
    span_x, span_y = (x.max() - x.min()) or 1.0, (y.max() - y.min()) or 1.0
    offsets, placed = {}, []
    for index in xs.index:
        stacked = sum(abs(x[index] - x[o]) < near * span_x and abs(y[index] - y[o]) < near * span_y for o in placed)
        offsets[index] = 6 + 11 * stacked
        placed.append(index)
    return pd.Series(offsets)


def tradeoff(stats: pd.DataFrame, column: str, xlabel: str, log_x: bool = False) -> bytes:
    """Mean test accuracy against a mean cost per configuration, error bars over seeds, Pareto front dashed."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    on_front = pd.Series(False, index=stats.index)
    for i, (_, setting) in enumerate(stats.groupby(SETTING, dropna=False, sort=False)):
        on_front[setting.index] = pareto_front(setting[f"{column}_mean"], setting["test_acc_mean"])
        front = setting[on_front[setting.index]].sort_values(f"{column}_mean")
        ax.step(
            front[f"{column}_mean"],
            front["test_acc_mean"],
            where="post",
            linestyle="--",
            color="gray",
            label="Pareto front" if i == 0 else None,
        )
        ax.scatter(front[f"{column}_mean"], front["test_acc_mean"], s=160, facecolors="none", edgecolors="gray")
    low = RANGES.get(column)
    for _, row in stats.iterrows() if low and f"{low}_mean" in stats else ():
        if row[f"{low}_mean"] < row[f"{column}_mean"]:  # gradual: its first stage held less than its peak
            xs = (row[f"{low}_mean"], row[f"{column}_mean"])
            ax.plot(xs, [row["test_acc_mean"]] * 2, color=_color(row["strategy"]), linewidth=4, alpha=0.3)
    seen: set[str] = set()
    offsets = label_offsets(stats[f"{column}_mean"], stats["test_acc_mean"], log_x)
    for index, row in stats.iterrows():
        ax.errorbar(
            row[f"{column}_mean"],
            row["test_acc_mean"],
            xerr=_err(row[f"{column}_std"]),
            yerr=_err(row["test_acc_std"]),
            fmt="o",
            color=_color(row["strategy"]),
            capsize=3,
            label=None if row["strategy"] in seen else row["strategy"],
        )
        seen.add(row["strategy"])
        if len(stats) <= MAX_LABELS or on_front[index]:  # a big sweep labels its front only; colours say the rest
            xy = (row[f"{column}_mean"], row["test_acc_mean"])
            ax.annotate(row["label"], xy, textcoords="offset points", xytext=(6, offsets[index]), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" (log scale)" if log_x else ""))
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy vs {xlabel} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=8)  # outside: over no point
    return _png(fig)


def val_curves(curves: pd.DataFrame, stats: pd.DataFrame) -> bytes:
    """Validation accuracy per epoch per configuration, mean over seeds with a ±std band."""
    keys = SETTING + CONFIG
    labels = {tuple(map(str, row[keys])): (row["label"], row["strategy"]) for _, row in stats.iterrows()}
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for key, group in curves.groupby(keys, dropna=False, sort=False):
        label, strategy = labels.get(tuple(map(str, key)), (str(key), ""))
        per_epoch = group.groupby("epoch")["val_acc"].agg(["mean", "std"]).fillna({"std": 0.0})
        ax.plot(per_epoch.index, per_epoch["mean"], marker="o", color=_color(strategy), label=label)
        ax.fill_between(
            per_epoch.index,
            per_epoch["mean"] - per_epoch["std"],
            per_epoch["mean"] + per_epoch["std"],
            color=_color(strategy),
            alpha=0.15,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy per epoch (mean ± std over seeds)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=8)  # outside: over no point
    return _png(fig)


def axis_view(table: pd.DataFrame, key: str) -> bytes:
    """The PNG of `axis_figure`."""
    return _png(axis_figure(table, key))


def axis_figure(table: pd.DataFrame, key: str) -> Figure:
    """Accuracy, memory and fit time against one swept value (rows, one scale per row), a panel per strategy
    (columns), a line per value of the other swept settings (one colour each in every panel), error bars over
    seeds; the values validation picks ringed. The legend sits below the panels, over no point. Each line is
    drawn thinner and with smaller markers than the one before: where lines coincide (memory does not depend on
    the learning rate) the earlier ones show as rings around the later, not hidden under them."""
    strategies = list(dict.fromkeys(table["strategy"]))
    figures = [f for f in FIGURES if table[f"{f}_mean"].notna().any()]
    lines = list(dict.fromkeys(table["line"]))
    colors = {line: f"C{i % 10}" for i, line in enumerate(lines)}
    sizes = {line: (max(3.0, 8.0 - 2.5 * i), max(1.0, 2.5 - 0.7 * i)) for i, line in enumerate(lines)}
    fig = Figure(figsize=(3.6 * len(strategies), 2.8 * len(figures) + 0.6), layout="constrained")
    grid = fig.subplots(len(figures), len(strategies), squeeze=False, sharex=True, sharey="row")
    values = table[key]
    ticks = sorted(values.unique())
    log_x = bool(values.min() > 0 and values.max() / values.min() >= 10)
    for col, strategy in enumerate(strategies):
        rows = table[table["strategy"] == strategy]
        for row, figure in enumerate(figures):
            ax = grid[row][col]
            for line, points in rows.groupby("line", sort=False):
                points = points.sort_values(key)
                marker_size, width = sizes[line]
                ax.errorbar(
                    points[key], points[f"{figure}_mean"], yerr=points[f"{figure}_std"], marker="o", capsize=3,
                    markersize=marker_size, linewidth=width,
                    color=_color(strategy) if line == strategy else colors[line], label=line,
                )  # fmt: skip
            if figure == "test_acc":
                picked = rows[rows["picked"]]
                if not picked.empty:
                    ax.scatter(picked[key], picked["test_acc_mean"], s=180, facecolors="none", edgecolors="black",
                               label="picked on validation")  # fmt: skip
                ax.set_title(strategy, color=_color(strategy))
            if log_x:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(ticks, labels=[f"{v:g}" for v in ticks], fontsize=8)  # the swept values, nothing between
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(FIGURES[figure], fontsize=8)
            if row == len(figures) - 1:
                ax.set_xlabel(key + (" (log scale)" if log_x else ""))
    handles = {label: handle for ax in grid[0] for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    ringed = "; ringed: the value validation picks" if table["picked"].any() else ""
    fig.suptitle(f"Against {key} (mean ± std over seeds{ringed})")
    return fig
