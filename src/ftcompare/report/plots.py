"""Report figures (matplotlib, no display needed): accuracy against each cost, and validation curves."""

from __future__ import annotations

import io
import zlib

import pandas as pd
from matplotlib.figure import Figure

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
            ax.annotate(row["label"], xy, textcoords="offset points", xytext=(6, 6), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" (log scale)" if log_x else ""))
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy vs {xlabel} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.1)
    ax.legend(loc="lower right", fontsize=8)
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
    ax.legend(fontsize=8)
    return _png(fig)
