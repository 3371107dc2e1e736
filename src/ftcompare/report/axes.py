"""The settings a sweep varied, as axes: per strategy, accuracy, training memory and fit time against each swept
value, and the values validation picks. Generic: any override given several numeric values is an axis (the
learning rate or `lr_multiplier`, the batch size, the train size, ...); the seed and the strategy are not.
A train size is a condition, not a choice: validation would pick the most data by construction, so it is drawn and
never picked; the choices swept with it are picked at each of its values."""

from __future__ import annotations

import pandas as pd

from ftcompare.report.records import parse_overrides

# what an axis view draws against the swept value: column -> label
FIGURES = {
    "test_acc": "test accuracy",
    "tensor_memory_mib": "training memory (MiB, tensors)",
    "fit_time_s": "fit time (s)",
}
NOT_AXES = {"seed", "strategy"}
CONDITIONS = {"data.train_subset", "data.train_size"}  # how much data a run had: drawn, never picked
GROUPS = ["model", "data", "strategy"]  # never drawn on one line together


def _pick_within(swept: pd.DataFrame) -> list[str]:
    """What validation picks a choice within: the model, data, strategy and the swept conditions."""
    return [*GROUPS, *(c for c in swept.columns if c in CONDITIONS)]


def swept_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Per finished run (indexed as `runs`), its value of each swept key: an override with several numeric
    values across the runs."""
    ok = runs[runs["status"] == "ok"]
    parsed = pd.DataFrame(
        [{key.lstrip("+~"): value for key, value in parse_overrides(o).items()} for o in ok["overrides"]],
        index=ok.index,
    )
    axes = {}
    for key in parsed.columns.difference(sorted(NOT_AXES)):
        values = pd.to_numeric(parsed[key], errors="coerce")
        if values.notna().all() and values.nunique() > 1:
            axes[key] = values
    return pd.DataFrame(axes, index=ok.index)


def axis_table(runs: pd.DataFrame, swept: pd.DataFrame, key: str) -> pd.DataFrame:
    """Mean and std over seeds of the figures and validation accuracy, per strategy, the other swept values and
    `key`'s value; `line` names what one line of the view holds, `picked` marks the values validation picks."""
    others = [k for k in swept.columns if k != key]
    frame = runs.loc[swept.index, [*GROUPS, "seed", "val_acc", *FIGURES]].join(swept)
    keys = [*GROUPS, *others, key]
    table = frame.groupby(keys, dropna=False)[["val_acc", *FIGURES]].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    table["seeds"] = frame.groupby(keys, dropna=False)["seed"].nunique()
    table = table.reset_index()
    several = [c for c in ("model", "data") if table[c].nunique() > 1]
    table["line"] = [
        " ".join([*(str(row[c]) for c in several), *(f"{k}={row[k]:g}" for k in others)]) or row["strategy"]
        for _, row in table.iterrows()
    ]
    within = _pick_within(swept)
    ranked = table.sort_values(["val_acc_mean", "fit_time_s_mean"], ascending=[False, True], kind="stable")
    choice = table.groupby(within, dropna=False)["seeds"].transform("size") > 1  # one point: nothing to pick
    table["picked"] = table.index.isin(ranked.groupby(within, dropna=False, sort=False).head(1).index) & choice
    return table


def best_values(runs: pd.DataFrame, swept: pd.DataFrame) -> pd.DataFrame:
    """Per model, data and strategy (and train size, where swept), the swept values with the best mean validation
    accuracy over seeds (a tie to the shorter fit), with its validation and test accuracy; empty when only
    conditions were swept."""
    if set(swept.columns) <= CONDITIONS:
        return pd.DataFrame()
    within = _pick_within(swept)
    frame = runs.loc[swept.index, [*GROUPS, "seed", "val_acc", "test_acc", "fit_time_s"]].join(swept)
    means = frame.groupby([*GROUPS, *swept.columns], dropna=False)[["val_acc", "test_acc", "fit_time_s"]].mean()
    ranked = means.reset_index().sort_values(["val_acc", "fit_time_s"], ascending=[False, True], kind="stable")
    best = ranked.groupby(within, dropna=False, sort=False).head(1)  # the best strategy first
    if len(within) > len(GROUPS):  # a strategy's picks together, by train size
        best = best.sort_values(within, kind="stable")
    columns = [c for c in GROUPS if c == "strategy" or best[c].nunique() > 1]
    shown = best[[*columns, *swept.columns, "val_acc", "test_acc"]].rename(
        columns={"val_acc": "mean val acc", "test_acc": "mean test acc"}
    )
    return shown.round({"mean val acc": 4, "mean test acc": 4}).reset_index(drop=True)
