"""Views of a sweep's axes: every swept numeric setting drawn per strategy, the values validation picks."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from ftcompare.report.axes import axis_table, best_values, swept_values
from ftcompare.report.page import Report
from ftcompare.report.plots import axis_figure
from ftcompare.report.records import MEASURED, PROCESS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def grid_runs() -> pd.DataFrame:
    """full and lora x two learning rates x two batch sizes x two seeds; lora is best at its higher rate and
    batch 16 on validation, full at its lower rate and batch 32. Memory grows with the batch."""
    rows = []
    for job, (strategy, lr, batch, seed) in enumerate(
        itertools.product(("full", "lora"), (1e-4, 1e-3), (16, 32), (0, 1))
    ):
        good = (strategy, lr, batch) in {("full", 1e-4, 32), ("lora", 1e-3, 16)}
        val = 0.9 if good else 0.85
        rows.append(
            {
                **dict.fromkeys(MEASURED, 1.0),
                **dict.fromkeys(PROCESS),
                "job": job,
                "status": "ok",
                "strategy": strategy,
                "model": "m",
                "data": "imdb",
                "split": "4000/1000/1000 seed 42",
                "max_length": 256,
                "precision": "bf16-mixed",
                "lr": lr,
                "batch_size": batch,
                "max_epochs": 3,
                "seed": seed,
                "epochs_run": 3,
                "memory_method": "torch MemTracker",
                "device": "cpu",
                "test_fingerprint": None,
                "overrides": f"strategy={strategy} optimizer.lr={lr} +data.batch_size={batch} seed={seed}",
                "error": "",
                "dir": f"{job}",
                "variant": "",
                "val_acc": val + 0.001 * seed,
                "test_acc": val - 0.01 + 0.002 * seed,
                "tensor_memory_mib": 10.0 * batch * (2 if strategy == "full" else 1),
                "fit_time_s": 100.0 + batch,
            }
        )
    return pd.DataFrame(rows)


def test_swept_numeric_settings_are_the_axes_and_seed_and_strategy_are_not():
    runs = grid_runs()
    swept = swept_values(runs)
    assert sorted(swept.columns) == ["data.batch_size", "optimizer.lr"]  # `+` of an appended key dropped
    assert swept_values(runs.assign(overrides="strategy=full seed=0")).empty


def test_the_axis_table_averages_seeds_per_line_and_rings_the_validation_pick():
    runs = grid_runs()
    table = axis_table(runs, swept_values(runs), "optimizer.lr")
    assert len(table) == 8 and set(table["seeds"]) == {2}  # 2 strategies x 2 batch sizes x 2 rates
    assert set(table["line"]) == {"data.batch_size=16", "data.batch_size=32"}
    picked = table[table["picked"]].set_index("strategy")
    assert picked.loc["full", "optimizer.lr"] == 1e-4 and picked.loc["full", "data.batch_size"] == 32
    assert picked.loc["lora", "optimizer.lr"] == 1e-3 and picked.loc["lora", "data.batch_size"] == 16
    assert table.loc[table["picked"], "test_acc_mean"].tolist() == pytest.approx([0.891, 0.891])
    best = best_values(runs, swept_values(runs)).set_index("strategy")
    assert best.loc["lora", "optimizer.lr"] == 1e-3 and best.loc["full", "data.batch_size"] == 32
    assert best.loc["full", "mean val acc"] == pytest.approx(0.9005)


def test_the_report_draws_one_view_per_axis(tmp_path):
    report = Report(tmp_path, grid_runs())
    written = {p.name for p in report.write()}
    assert {"axis_optimizer.lr.png", "axis_data.batch_size.png"} <= written
    for name in ("axis_optimizer.lr.png", "axis_data.batch_size.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    summary = (tmp_path / "summary.md").read_text()
    assert "## Swept settings (data.batch_size, optimizer.lr): the values validation picks per strategy" in summary


def test_lines_at_one_place_leave_each_other_visible():
    """Memory does not depend on the learning rate: both rates' memory lines against the batch size lie on each
    other. The first drawn must be larger, or the second hides it and the rate looks unmeasured."""
    runs = grid_runs()
    figure = axis_figure(axis_table(runs, swept_values(runs), "data.batch_size"), "data.batch_size")
    (memory,) = [ax for ax in figure.axes if ax.get_ylabel().startswith("training memory")]  # the first panel's
    drawn = [line for line in memory.get_lines() if line.get_marker() == "o"]
    assert len(drawn) == 2
    first, second = drawn
    assert list(first.get_ydata()) == list(second.get_ydata())  # the same points
    assert first.get_markersize() > second.get_markersize() and first.get_linewidth() > second.get_linewidth()


def curve_runs(with_lr: bool) -> pd.DataFrame:
    """The grid's runs relabelled as a learning curve: the batch size becomes the train size (250 and 500 reviews),
    validation best on the most data as it is by construction; optionally with the learning rate swept too."""
    runs = grid_runs()
    size = runs["batch_size"].map({16: 250, 32: 500})
    runs["val_acc"] = 0.8 + size / 10_000 + runs["lr"]  # the higher rate a little ahead at each size
    lr = runs["lr"].map(lambda v: f" optimizer.lr={v}") if with_lr else ""
    runs["overrides"] = "strategy=" + runs["strategy"] + " data.train_subset=" + size.astype(str) + lr
    runs["split"] = "4000/1000/1000 seed 42, train subset " + size.astype(str)  # as the run records write it
    return runs


def test_a_train_size_is_drawn_but_never_picked_and_choices_are_picked_at_each_size(tmp_path):
    runs = curve_runs(with_lr=False)
    swept = swept_values(runs)
    assert list(swept.columns) == ["data.train_subset"]
    assert not axis_table(runs, swept, "data.train_subset")["picked"].any()  # more data is no choice
    assert best_values(runs, swept).empty
    report = Report(tmp_path, runs)
    assert "axis_data.train_subset.png" in {p.name for p in report.write()}
    summary = (tmp_path / "summary.md").read_text()
    assert "Swept settings" not in summary
    sizes = "`4000/1000/1000 seed 42, train subset 250`, `4000/1000/1000 seed 42, train subset 500`"
    assert f"2 model/data settings (split: {sizes})" in summary  # says what differs, smaller first

    runs = curve_runs(with_lr=True)
    swept = swept_values(runs)
    table = axis_table(runs, swept, "data.train_subset")
    picked = table[table["picked"]]
    assert sorted(zip(picked["strategy"], picked["data.train_subset"], picked["optimizer.lr"], strict=True)) == [
        ("full", 250, 1e-3), ("full", 500, 1e-3), ("lora", 250, 1e-3), ("lora", 500, 1e-3),
    ]  # fmt: skip
    best = best_values(runs, swept)
    assert len(best) == 4 and set(best["optimizer.lr"]) == {1e-3}
    Report(tmp_path, runs).write()
    summary = (tmp_path / "summary.md").read_text()
    assert "picks per strategy at each data.train_subset" in summary
