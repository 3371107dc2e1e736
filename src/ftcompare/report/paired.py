"""Paired comparison of strategies on the test examples they share: the report claims a difference only where
it holds example by example, not from means and spreads over seeds.

For two strategies at their best configuration (chosen on validation), scored on the same test split:
- a paired bootstrap of the accuracy difference, resampling the shared examples and the seeds both ran, with a
  95% interval: `ahead` or `behind` when the interval excludes 0, else `level`;
- McNemar's exact test per seed: of the examples the two runs disagree on, does either win more than chance.
Runs with different test splits (another fingerprint) are never paired.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ftcompare.per_example import correct_by_example
from ftcompare.report.records import CONFIG, SETTING

REFERENCE = "full"  # the strategy the others are compared with (else the best on validation)
BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95
COLUMNS = [*SETTING, "strategy", "against", "seeds", "examples", "difference", "low", "high", "reading", "mcnemar_p"]


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant examples' split against Binomial(n, 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> np.ndarray:
    """Bootstrap draws of mean accuracy difference a - b; `a`, `b`: (seeds, examples) correctness, the same
    examples in the same columns and seed s of both in row s. Each draw resamples examples (the same for both
    strategies: paired) and seeds, with replacement."""
    seeds, examples = a.shape
    diff = a.astype(np.float64) - b.astype(np.float64)
    rng = np.random.default_rng(seed)
    example_weights = rng.multinomial(examples, np.full(examples, 1 / examples), size=draws)
    seed_weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws)
    return np.einsum("ds,se,de->d", seed_weights, diff, example_weights) / (seeds * examples)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, object] | None:
    """Strategy `a` against `b`: correctness tables (examples x seeds, indexed by example id), paired on the seeds
    and examples both have; None when they share none."""
    seeds = [s for s in a.columns if s in b.columns]
    examples = a.index.intersection(b.index)
    if not seeds or examples.empty:
        return None
    x, y = a.loc[examples, seeds].to_numpy().T, b.loc[examples, seeds].to_numpy().T
    draws = paired_bootstrap(x, y)
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    diff = float(x.mean() - y.mean())
    p_values = [mcnemar_exact(int((xs & ~ys).sum()), int((~xs & ys).sum())) for xs, ys in zip(x, y, strict=True)]
    return {
        "seeds": len(seeds),
        "examples": len(examples),
        "difference": diff,
        "low": float(low),
        "high": float(high),
        "reading": "ahead" if low > 0 else "behind" if high < 0 else "level",
        "mcnemar_p": p_values,
    }


def correctness(sweep_dir: Path, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per strategy, test correctness as a table: a row per example id, a column per seed."""
    tables = {}
    for strategy, group in runs.groupby("strategy"):
        columns = {}
        for run in group.itertuples():
            right = correct_by_example(sweep_dir / run.dir)
            if right is not None and not right.empty:
                columns[run.seed] = right
        if columns:  # examples every seed scored
            tables[strategy] = pd.DataFrame(columns).dropna().astype(bool)
    return tables


def paired_table(sweep_dir: Path, runs: pd.DataFrame, best: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each strategy's best configuration against the reference (full) and against the best on validation, per
    model/data setting: (table, notes on what could not be paired and why)."""
    rows, notes = [], []
    ok = runs[runs["status"] == "ok"]
    for setting, group in best.groupby(SETTING, dropna=False, sort=False):
        if "(" in setting[2]:  # a sliced split (records._split_label): no conclusions are drawn from it
            continue
        chosen = ok.merge(group[[*SETTING, *CONFIG]], on=[*SETTING, *CONFIG])
        fingerprints = chosen["test_fingerprint"].dropna().unique()
        if len(fingerprints) > 1:
            notes.append(
                f"{setting[0]}, {setting[1]}: the strategies' best runs were scored on {len(fingerprints)} different"
                " test splits (fingerprints differ), so they are not paired."
            )
            continue
        tables = correctness(sweep_dir, chosen)
        missing = sorted(set(group["strategy"]) - set(tables))
        if missing:
            notes.append(
                f"no per-example predictions (predictions.csv) for {', '.join(missing)}: runs from before they were"
                " written are not paired."
            )
        if len(tables) < 2:
            continue
        by_val = group.set_index("strategy")["val_acc_mean"].loc[list(tables)]
        reference = REFERENCE if REFERENCE in tables else by_val.idxmax()
        against = {reference: "reference"}
        against[by_val.idxmax()] = (
            "reference, best on validation" if by_val.idxmax() == reference else "best on validation"
        )
        for other, role in against.items():
            for name in tables:
                if name == other:
                    continue
                result = compare(tables[name], tables[other])
                if result is not None:
                    rows.append(
                        {
                            **dict(zip(SETTING, setting, strict=True)),
                            "strategy": name,
                            "against": f"{other} ({role})",
                            **result,
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS), notes


def display_paired(table: pd.DataFrame) -> pd.DataFrame:
    """The paired table as shown: the settings that differ, the difference with its interval, McNemar per seed,
    rounded."""
    varying = [column for column in SETTING if table[column].nunique(dropna=False) > 1]
    return pd.DataFrame(
        {
            **{column: table[column] for column in varying},
            "strategy": table["strategy"],
            "against": table["against"],
            "test acc difference": table["difference"].map(lambda d: f"{d:+.3f}"),
            f"{CONFIDENCE:.0%} interval": [
                f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table["low"], table["high"], strict=True)
            ],
            "reading": table["reading"],
            "McNemar p per seed": table["mcnemar_p"].map(lambda ps: ", ".join(f"{p:.3g}" for p in ps)),
            "seeds": table["seeds"],
            "examples": table["examples"],
        }
    )
