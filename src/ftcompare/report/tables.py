"""Aggregates of a sweep's runs: mean ± std per configuration, the best configuration per strategy, the
Pareto front, and the tables (and one-line run summary) they are shown in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ftcompare.report.records import CONFIG, MEASURED, SETTING

AGGREGATED = list(MEASURED)

# Summary table: label, results.csv column, format.
DISPLAYED = [
    ("test acc", "test_acc", "{:.4f}"),
    ("test F1", "test_f1", "{:.4f}"),
    ("test AUROC", "test_auroc", "{:.4f}"),
    ("best val acc", "val_acc", "{:.4f}"),
    ("fit time (s)", "fit_time_s", "{:.0f}"),
    ("s / epoch", "epoch_time_s", "{:.0f}"),
    ("train samples/s", "train_samples_per_s", "{:.1f}"),
    ("tensor memory (MiB)", "tensor_memory_mib", "{:.0f}"),
    ("peak memory (MiB)", "peak_memory_mb", "{:.0f}"),
    ("training memory (MiB)", "train_memory_mb", "{:.0f}"),
    ("trainable params", "trainable_params", "{:,.0f}"),
    ("trainable %", "trainable_pct", "{:.2f}"),
    ("checkpoint (MiB)", "checkpoint_mb", "{:.0f}"),
]
# The one line a run prints when it ends.
SUMMARY_LINE = {
    *("test acc", "test F1", "best val acc"),
    *("fit time (s)", "train samples/s", "tensor memory (MiB)", "training memory (MiB)", "trainable %"),
}
SAME_FOR_EVERY_SEED = ("trainable_params", "trainable_pct", "checkpoint_mb")
HEADERS = {"batch_size": "batch size", "max_epochs": "epochs", "max_length": "max length"}


def summary_line(record: dict[str, Any]) -> str:
    """One human-readable line per run for the terminal."""
    parts = []
    for label, column, fmt in DISPLAYED:
        section, key = MEASURED[column]
        if label in SUMMARY_LINE and record[section].get(key) is not None:
            parts.append(f"{label} {fmt.format(record[section][key])}")
    return f"[{record['strategy']}] " + " | ".join(parts)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count per configuration (setting + config), sorted by mean test accuracy."""
    keys = SETTING + CONFIG
    keyed = runs.assign(_key=runs[keys].astype(str).agg("|".join, axis=1))
    ok = keyed[keyed["status"] == "ok"]
    by_config = ok.groupby("_key")
    stats = by_config[AGGREGATED].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    stats["seeds"] = by_config["seed"].nunique()
    stats["not ok"] = keyed[keyed["status"] != "ok"].groupby("_key").size().reindex(stats.index, fill_value=0)
    stats["memory_method"] = by_config["memory_method"].agg(lambda m: ", ".join(sorted(m.dropna().unique())))
    stats = by_config[keys].first().join(stats).reset_index(drop=True)
    stats = stats.sort_values("test_acc_mean", ascending=False, ignore_index=True)
    stats["label"] = _labels(stats)
    return stats


def _labels(stats: pd.DataFrame) -> list[str]:
    """Short names for plots: the strategy, plus whatever tells its configurations apart."""
    varying = [c for c in [*SETTING, *CONFIG[1:]] if stats[c].astype(str).nunique() > 1]
    labels = []
    for _, row in stats.iterrows():
        same_strategy = stats[stats["strategy"] == row["strategy"]]
        extra = [f"{c}={row[c]}" for c in varying if same_strategy[c].astype(str).nunique() > 1 and row[c] != ""]
        labels.append(" ".join([row["strategy"], *extra]))
    return labels


def best_per_strategy(stats: pd.DataFrame) -> pd.DataFrame:
    """Per setting and strategy, the configuration with the best mean validation accuracy (not test); a tie goes
    to the one with the shorter fit, never to the better test figure."""
    ranked = stats.sort_values(["val_acc_mean", "fit_time_s_mean"], ascending=[False, True], kind="stable")
    best = ranked.groupby([*SETTING, "strategy"], dropna=False, sort=False).head(1)
    return best.sort_values("test_acc_mean", ascending=False, ignore_index=True)


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> list[bool]:
    """True for points no other point beats: at most the cost and at least the score, better in one."""

    def valid(c: float, s: float) -> bool:
        return not (math.isnan(c) or math.isnan(s))

    points = [(float(c), float(s)) for c, s in zip(cost, score, strict=True)]
    return [
        valid(c, s) and not any(valid(c2, s2) and c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in points)
        for c, s in points
    ]


def _mean_std(row: pd.Series, column: str, fmt: str, spread: bool = True) -> str:
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    if pd.isna(mean):
        return "–"
    return fmt.format(mean) + ("" if pd.isna(std) or not spread else " ± " + fmt.format(std))


def display_table(stats: pd.DataFrame) -> pd.DataFrame:
    """The summary as formatted strings (mean ± std), dropping columns that are the same everywhere."""
    table = stats[[*SETTING, *CONFIG, "seeds"]].copy()
    for label, column, fmt in DISPLAYED:
        spread = column not in SAME_FOR_EVERY_SEED
        table[label] = [_mean_std(row, column, fmt, spread) for _, row in stats.iterrows()]
        if column == "tensor_memory_mib":
            table["memory method"] = stats["memory_method"]  # in the header instead where every run shares it
    table["not ok"] = stats["not ok"]
    constant = [c for c in [*SETTING, "max_epochs", "variant", "memory method"] if table[c].astype(str).nunique() <= 1]
    if not (table["not ok"] > 0).any():
        constant.append("not ok")
    return table.drop(columns=constant).rename(columns=HEADERS)


# The sweep's last screen: what a terminal of 100 columns shows without wrapping (the rest: summary.md)
COMPACT = [("test acc", "test_acc", "{:.4f}"), ("fit (s)", "fit_time_s", "{:.0f}"),
           ("tensors (MiB)", "tensor_memory_mib", "{:.0f}"), ("trainable %", "trainable_pct", "{:.2f}")]  # fmt: skip


def compact_table(stats: pd.DataFrame) -> pd.DataFrame:
    """The summary for the console: the settings that differ between rows, then accuracy and cost."""
    varying = [c for c in [*SETTING, *CONFIG] if stats[c].astype(str).nunique() > 1 or c == "strategy"]
    table = stats[varying].copy().rename(columns=HEADERS)
    if stats["seeds"].max() > 1:
        table["seeds"] = stats["seeds"]
    for label, column, fmt in COMPACT:
        table[label] = [_mean_std(row, column, fmt, column not in SAME_FOR_EVERY_SEED) for _, row in stats.iterrows()]
    return table


def markdown_table(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)
