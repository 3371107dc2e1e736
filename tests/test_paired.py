"""Paired comparison in the report: strategies judged example by example on the test split they share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from ftcompare.per_example import PREDICTIONS_FILE, example_id
from ftcompare.report.paired import compare, display_paired, mcnemar_exact, paired_bootstrap, paired_table
from ftcompare.report.reading import reading
from ftcompare.report.records import MEASURED
from ftcompare.report.tables import best_per_strategy, summarise

TEST = "ab" * 32  # a test split fingerprint
N = 400


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (0, 6), (5, 5), (3, 17), (40, 21), (120, 80)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_examples(a_only, b_only):
    expected = 1.0 if a_only + b_only == 0 else binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def test_the_bootstrap_is_paired_over_examples():
    """Two strategies that fail on the same hard examples differ by nothing, on every draw; one that also gets
    5% more right is ahead, with an interval around that 5%."""
    rng = np.random.default_rng(0)
    base = rng.random((3, N)) < 0.8
    assert (paired_bootstrap(base, base.copy()) == 0).all()
    better = base.copy()
    better[:, :20] = True
    base[:, :20] = False
    draws = paired_bootstrap(better, base)
    assert draws.mean() == pytest.approx(20 / N, abs=0.005)
    assert np.quantile(draws, 0.025) > 0


def _correctness(accuracy: float, seeds: int, seed: int, shared_wrong: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    right = (rng.random((N, seeds)) < accuracy) & ~shared_wrong[:, None]
    return pd.DataFrame(right, index=[example_id(TEST, i) for i in range(N)], columns=range(seeds))


def test_level_ahead_and_behind_follow_the_interval():
    hard = np.arange(N) < 40  # every strategy misses these
    full = _correctness(0.97, 3, 1, hard)
    assert compare(full, full)["reading"] == "level"
    worse = full.copy()
    worse.iloc[40:120] = False  # 80 more examples wrong in every seed
    assert compare(worse, full)["reading"] == "behind" and compare(full, worse)["reading"] == "ahead"
    result = compare(worse, full)
    assert result["difference"] == pytest.approx(-(full.iloc[40:120].to_numpy().mean() * 80 / N))
    assert len(result["mcnemar_p"]) == 3 and all(p < 1e-6 for p in result["mcnemar_p"])
    assert compare(full, full[[0]].rename(columns={0: 7})) is None  # no seed in common: nothing to pair


def _write_run(root, name: str, right: pd.Series) -> None:
    folder = root / name
    folder.mkdir()
    label = np.where(np.arange(len(right)) % 2 == 0, "positive", "negative")
    predicted = np.where(right.to_numpy(), label, np.where(label == "positive", "negative", "positive"))
    frame = pd.DataFrame({"split": "test", "example_id": right.index, "label": label, "predicted": predicted})
    frame.to_csv(folder / PREDICTIONS_FILE, index=False)


def _sweep(
    tmp_path, tables: dict[str, pd.DataFrame], fingerprints: dict[str, str] | None = None, subset: int | None = None
) -> pd.DataFrame:
    """Run folders with predictions.csv for each strategy and seed, and their results rows."""
    rows = []
    for strategy, table in tables.items():
        for seed in table.columns:
            name = f"{strategy}_{seed}" + (f"_{subset}" if subset else "")
            _write_run(tmp_path, name, table[seed])
            accuracy = float(table[seed].mean())
            rows.append(
                {
                    **dict.fromkeys(MEASURED, 1.0),
                    "status": "ok",
                    "model": "m",
                    "data": "imdb",
                    "split": "4000/1000/400 seed 42" + (f", train subset {subset}" if subset else ""),
                    "max_length": 256,
                    "strategy": strategy,
                    "lr": 1e-4,
                    "batch_size": 16,
                    "max_epochs": 3,
                    "variant": "",
                    "seed": seed,
                    "dir": name,
                    "test_acc": accuracy,
                    "val_acc": accuracy,
                    "test_fingerprint": (fingerprints or {}).get(strategy, TEST),
                    "memory_method": "torch MemTracker",
                }
            )
    return pd.DataFrame(rows)


def test_the_report_pairs_the_best_configurations_and_reads_from_the_interval(tmp_path):
    hard = np.arange(N) < 40
    full = _correctness(0.97, 3, 1, hard)
    lora = full.copy()
    lora.iloc[45] = ~lora.iloc[45]  # one example: no difference worth a claim
    frozen = full.copy()
    frozen.iloc[40:120] = False
    runs = _sweep(tmp_path, {"full": full, "lora": lora, "frozen": frozen})
    best = best_per_strategy(summarise(runs))
    table, notes = paired_table(tmp_path, runs, best)
    assert notes == []
    against_full = table[table["against"].str.startswith("full (reference")].set_index("strategy")
    assert against_full.loc["lora", "reading"] == "level" and against_full.loc["frozen", "reading"] == "behind"
    assert set(against_full["examples"]) == {N} and set(against_full["seeds"]) == {3}
    shown = display_paired(table)
    assert list(shown.columns)[:5] == ["strategy", "against", "test acc difference", "95% interval", "reading"]
    sentences = reading(best, paired=table)
    frozen_line = next(s for s in sentences if s.startswith("frozen reaches"))
    assert f"paired on {N} test examples x 3 seed(s)" in frozen_line and ": behind)" in frozen_line
    verdict = sentences[-1]
    assert verdict.startswith("verdict: best on validation") and "frozen" not in verdict.split("level with it")[1]


def test_runs_on_different_test_splits_or_without_predictions_are_not_paired(tmp_path):
    full = _correctness(0.9, 2, 1, np.zeros(N, dtype=bool))
    runs = _sweep(tmp_path, {"full": full, "lora": full}, fingerprints={"lora": "cd" * 32})
    table, notes = paired_table(tmp_path, runs, best_per_strategy(summarise(runs)))
    assert table.empty and "2 different test splits" in notes[0]
    for seed in (0, 1):
        (tmp_path / f"lora_{seed}" / PREDICTIONS_FILE).unlink()
    runs["test_fingerprint"] = TEST
    table, notes = paired_table(tmp_path, runs, best_per_strategy(summarise(runs)))
    assert table.empty and notes[0].startswith("no per-example predictions (predictions.csv) for lora")


def test_each_setting_is_read_from_its_own_paired_test(tmp_path):
    """Learning-curve points (one setting each): frozen is behind LoRA with 4000 reviews and level with 250."""
    hard = np.arange(N) < 40
    lora = _correctness(0.97, 1, 1, hard)
    frozen = lora.copy()
    frozen.iloc[40:120] = False
    runs = pd.concat(
        [
            _sweep(tmp_path, {"lora": lora, "frozen": frozen}, subset=4000),
            _sweep(tmp_path, {"lora": lora, "frozen": lora}, subset=250),
        ],
        ignore_index=True,
    )
    best = best_per_strategy(summarise(runs))
    table, _ = paired_table(tmp_path, runs, best)
    assert sorted(table["reading"]) == ["behind", "level"]
    sentences = reading(best, paired=table)
    compared = {s.split("]")[0]: s for s in sentences if " reaches " in s}  # one per setting: two strategies
    assert ": behind)" in compared["[4000/1000/400 seed 42, train subset 4000"]
    assert ": level)" in compared["[4000/1000/400 seed 42, train subset 250"]
    assert list(display_paired(table).columns)[:2] == ["split", "strategy"]
