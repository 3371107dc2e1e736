"""The sweep report: results.csv, summary.md, plots, HTML, failed jobs, grouping and the Pareto front."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import CHROMIUM, browser_check, events_dir, run_script, tiny_overrides
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ftcompare.builders import build_datamodule
from ftcompare.io import write_json
from ftcompare.report.baseline import baseline_table, sweep_baseline
from ftcompare.report.plots import label_offsets
from ftcompare.report.reading import _jobs, reading
from ftcompare.report.records import MEASURED, _variants, collect_runs, common_overrides, read_val_curves
from ftcompare.report.tables import best_per_strategy, display_table, pareto_front, summarise
from ftcompare.resolvers import job_dirname

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, tiny_models, reviews_csv) -> Path:
    """Two strategies x two seeds on the tiny setup; the report is written by the Hydra callback."""
    sweep = tmp_path_factory.mktemp("sweep")
    result = run_script(
        "train.py",
        "-m",
        "strategy=full,lora",
        "seed=0,1",
        *tiny_overrides(tiny_models["bert"], reviews_csv),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def test_results_csv_has_one_row_per_run_matching_its_metrics(tiny_sweep):
    results = pd.read_csv(tiny_sweep / "results.csv")
    assert len(results) == 4 and set(results["status"]) == {"ok"}
    assert sorted(zip(results["strategy"], results["seed"], strict=True)) == [
        ("full", 0),
        ("full", 1),
        ("lora", 0),
        ("lora", 1),
    ]
    for _, row in results.iterrows():
        record = json.loads((tiny_sweep / row["dir"] / "metrics.json").read_text())
        assert row["strategy"] == record["strategy"] and row["seed"] == record["seed"]
        for column, (section, key) in MEASURED.items():
            assert row[column] == pytest.approx(record[section][key]), column
        assert record["memory"]["method"].startswith(row["memory_method"] + ": ")
    assert (results.loc[results["strategy"] == "lora", "trainable_pct"] < 100).all()
    assert set(results["memory_method"]) == {"torch MemTracker"}
    assert "tensor memory measured by: torch MemTracker" in (tiny_sweep / "summary.md").read_text()


def markdown_rows(section: str) -> list[dict[str, str]]:
    """The rows of the first pipe table in a markdown section, as dicts by header."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def test_summary_md_shows_mean_and_std_over_seeds_from_the_csv(tiny_sweep):
    results = pd.read_csv(tiny_sweep / "results.csv")
    summary = (tiny_sweep / "summary.md").read_text()
    rows = {r["strategy"]: r for r in markdown_rows(summary.split("## Per configuration")[1].split("##")[0])}
    assert set(rows) == {"full", "lora"}
    for strategy, runs in results.groupby("strategy"):
        assert rows[strategy]["seeds"] == "2"
        for column, header, fmt in [("test_acc", "test acc", "{:.4f}"), ("test_auroc", "test AUROC", "{:.4f}")]:
            expected = f"{fmt.format(runs[column].mean())} ± {fmt.format(runs[column].std())}"
            assert rows[strategy][header] == expected, (strategy, header)
        fit_time = f"{runs['fit_time_s'].mean():.0f} ± {runs['fit_time_s'].std():.0f}"
        assert rows[strategy]["fit time (s)"] == fit_time
    assert "## Best configuration per strategy" in summary and "## Reading" in summary
    # the tiny sweep is sliced (a few batches): the reading refuses to compare
    assert "these runs were sliced for a look (limited batches): no conclusions" in summary
    assert "reaches" not in summary


def test_plots_and_html_are_written_and_not_empty(tiny_sweep):
    names = ["acc_vs_fit_time", "acc_vs_tensor_memory", "acc_vs_trainable_params", "val_acc_per_epoch"]
    for name in names:
        data = (tiny_sweep / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    page = (tiny_sweep / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(names)
    assert "<table" in page and "lora" in page and "Runs without a result" not in page
    # the header's paths and commands as code, not as markdown backticks
    assert f"<code>{tiny_sweep}</code>" in page and "<code>python train.py -m " in page and "`" not in page


def test_sweeps_merge_into_one_report_that_says_what_it_merged(tiny_sweep, tmp_path):
    """The tiny sweep cut in two chunks (seed 0, seed 1) and merged again: the same rows and statistics."""
    jobs = sorted(p for p in tiny_sweep.iterdir() if (p / ".hydra").is_dir())
    for chunk in ("a", "b"):
        (tmp_path / chunk).mkdir()
        shutil.copy(tiny_sweep / "multirun.yaml", tmp_path / chunk)
    for job in jobs:
        chunk = "a" if job.name.endswith("seed0") else "b"
        shutil.copytree(job, tmp_path / chunk / job.name)
    out = tmp_path / "merged"
    result = run_script("report.py", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    merged, whole = pd.read_csv(out / "results.csv"), pd.read_csv(tiny_sweep / "results.csv")
    assert len(merged) == len(whole) == 4 and sorted(merged["sweep"].unique()) == [str(tmp_path / c) for c in "ab"]
    key = ["strategy", "seed"]
    pd.testing.assert_series_equal(
        merged.sort_values(key)["test_acc"].reset_index(drop=True),
        whole.sort_values(key)["test_acc"].reset_index(drop=True),
    )
    assert all((out / d / "metrics.json").is_file() for d in merged["dir"])  # folders relative to the report
    assert (out / "val_acc_per_epoch.png").is_file()  # the runs' own files read through those relative folders
    summary = (out / "summary.md").read_text()
    assert f"Merged from 2 sweeps, written to `{out}`" in summary and f"`{tmp_path / 'a'}`: 2 runs" in summary
    assert markdown_rows(summary.split("## Per configuration")[1])[0]["seeds"] == "2"
    # some runs of a sweep, taken by their job folders: listed under their sweep with its command
    picked = sorted((tmp_path / "b").glob("*_seed1"))
    result = run_script("report.py", str(tmp_path / "a"), *map(str, picked), "--out", str(tmp_path / "picked"))
    assert result.returncode == 0, result.stderr[-2000:]
    header = (tmp_path / "picked" / "summary.md").read_text().split("##")[0]
    assert "Merged from 2 sweeps" in header
    assert f"`{tmp_path / 'b'}`: 2 runs (jobs 1, 3 of it), `python train.py -m " in header
    picked_summary = (tmp_path / "picked" / "summary.md").read_text()
    assert "Jobs 2 of a; 1, 3 of b ran in a process" in picked_summary  # by their sweep
    refused = run_script("report.py", str(tmp_path / "a"), str(tmp_path / "b"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        "error: merging several sweeps needs a folder for their report. Fix: --out DIR"
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to open the page (apt-get install chromium; CI installs it)")
def test_report_html_reads_right_in_a_real_browser(tiny_sweep, tmp_path):
    """Opened in headless Chromium: every image loads, no number is printed as stored (six or more decimals), code
    is not shown as markdown, and the page says these runs were sliced."""
    check = browser_check(tiny_sweep / "report.html", tmp_path)
    assert check["images"] == 4 and check["broken"] == [], check["broken"]
    assert check["unrounded"] == [], check["unrounded"]
    assert "`" not in check["text"] and f"Sweep: {tiny_sweep}" in check["text"]
    assert "sliced for a look (limited batches)" in check["text"]
    assert check["width"] <= 1280, check["width"]  # the runs table included: no sideways scrolling


def test_runs_with_limited_batches_are_marked_and_not_given_a_test_size(tiny_sweep):
    results = pd.read_csv(tiny_sweep / "results.csv")
    assert results["split"].str.endswith("(limited batches)").all()  # never grouped with full evaluations
    assert "test examples" not in (tiny_sweep / "summary.md").read_text()
    assert not (tiny_sweep / "baselines.json").exists()  # nor read against a baseline


def test_the_baseline_is_computed_once_on_the_runs_split_and_shown(tmp_path, compose_cfg, tiny_models, reviews_csv):
    """One split shared by the runs: TF-IDF is fitted on it, kept in baselines.json with the split's fingerprints,
    shown in the report, and fitted again when the runs' splits are other ones."""
    cfg = compose_cfg(*tiny_overrides(tiny_models["bert"], reviews_csv))
    run_dir = tmp_path / "0_full"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    fingerprints = datamodule.fingerprints

    (run_dir / "metrics.json").write_text(json.dumps({"provenance": {"split_fingerprints": fingerprints}}))
    runs = pd.DataFrame(
        [{"model": "m", "data": "files", "split": "64/32/32 seed 42", "max_length": 64, "dir": "0_full"}]
    )
    baseline = sweep_baseline(tmp_path, runs)
    assert json.loads((tmp_path / "baselines.json").read_text()) == baseline
    assert set(baseline["tfidf_whole_text"]) == {"validation", "test"} and "tfidf_head_tail_64_tokens" in baseline
    assert baseline["split_fingerprints"] == fingerprints
    table = baseline_table(baseline)
    assert list(table["baseline"]) == [
        "TF-IDF + logistic regression, whole review",
        "TF-IDF + logistic regression, the model's 64 tokens (head_tail)",
    ]
    kept = {**baseline, "tfidf_whole_text": {"test": 0.5}}
    (tmp_path / "baselines.json").write_text(json.dumps(kept))
    assert sweep_baseline(tmp_path, runs) == kept  # made on the same splits: read, not fitted again
    for stale in ({**kept, "split_fingerprints": {**fingerprints, "test": "another split"}}, {"tfidf_whole_text": {}}):
        (tmp_path / "baselines.json").write_text(json.dumps(stale))  # other splits, or no fingerprints: fitted again
        assert sweep_baseline(tmp_path, runs) == baseline
        assert json.loads((tmp_path / "baselines.json").read_text()) == baseline
    assert sweep_baseline(tmp_path / "other", pd.concat([runs, runs.assign(data="imdb")])) is None  # two datasets


def test_validation_curves_have_one_point_per_training_epoch(tiny_sweep):
    runs = collect_runs(tiny_sweep)
    curves = read_val_curves(tiny_sweep, runs)
    # the re-evaluation of the best checkpoint after fit must not show up as an extra epoch
    epochs = curves.groupby(["strategy", "seed"])["epoch"].apply(list)
    assert len(epochs) == 4 and all(e == [1, 2] for e in epochs), epochs


def test_tensorboard_hparams_hold_each_runs_settings_and_final_metrics(tiny_sweep):
    for job in (p for p in tiny_sweep.iterdir() if (p / "metrics.json").is_file()):
        record = json.loads((job / "metrics.json").read_text())
        accumulator = EventAccumulator(events_dir(job))
        accumulator.Reload()
        content = accumulator.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["strategy"].string_value == record["strategy"]
        assert hparams["seed"].number_value == record["seed"] and hparams["lr"].number_value == record["hparams"]["lr"]
        assert "hparams/test_acc" in accumulator.Tags()["scalars"]
        assert accumulator.Scalars("hparams/test_acc")[0].value == pytest.approx(record["test"]["test/acc"])
        peak = record["memory"]["at_peak_mib"]["total"]  # training memory beside accuracy in the HParams tab
        assert accumulator.Scalars("hparams/tensor_peak_mib")[0].value == pytest.approx(peak)


def test_failed_jobs_do_not_sink_the_sweep_and_the_report_lists_them(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "optimizer.lr=1e-3,1e30",  # 1e30 diverges: NaN loss
        "data.batch_size=0,8",  # 0 is refused by validation
        *(o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("data.batch_size=")),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_csv(sweep / "results.csv")  # written when the multirun ended: the sweep went on to its end
    by_job = {(row.lr, row.batch_size): row for row in results.itertuples()}
    assert len(by_job) == 4 and by_job[(1e-3, 8)].status == "ok"
    failures = {(1e-3, 0): "data.batch_size=0", (1e30, 0): "data.batch_size=0", (1e30, 8): "train/loss is"}
    for key, words in failures.items():
        row = by_job[key]
        assert row.status == "failed" and words in row.error and "Fix:" in row.error, row
        assert not (sweep / row.dir / "metrics.json").exists()
        assert json.loads((sweep / row.dir / "error.json").read_text())["error"] == row.error
    summary = (sweep / "summary.md").read_text()
    assert "## Runs without a result" in summary and "data.batch_size=0" in summary and "train/loss is" in summary
    report = run_script("report.py", str(sweep))  # by hand, the same
    assert report.returncode == 0 and "failed" in report.stdout, report.stderr[-3000:]


def test_report_without_a_sweep_is_a_clear_error(tmp_path):
    result = run_script("report.py", "--root", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_labels_of_points_at_one_place_are_stacked_not_overlaid():
    """The study's memory plot: full and gradual at the same tensor memory and almost the same accuracy."""
    memory = pd.Series([1299.0, 1299.0, 939.0, 161.0])
    accuracy = pd.Series([0.8987, 0.9007, 0.8987, 0.8353])
    assert label_offsets(memory, accuracy).tolist() == [6, 17, 6, 6]
    assert label_offsets(pd.Series([1.0, 1.0, 1.0]), pd.Series([0.5, 0.5, 0.5])).tolist() == [6, 17, 28]


def test_pareto_front_on_hand_made_points():
    cost = [1.0, 2.0, 3.0, 2.0, 4.0, float("nan"), 1.0]
    score = [0.80, 0.85, 0.84, 0.85, 0.90, 0.99, 0.79]
    # 3.0/0.84 is beaten by 2.0/0.85; equal points do not beat each other; NaN is never on the front;
    # 1.0/0.79 is beaten by 1.0/0.80 (same cost, better score)
    assert pareto_front(cost, score) == [True, True, False, True, True, False, False]


def _runs(rows: list[dict]) -> pd.DataFrame:
    """Hand-made results rows with everything the summary needs."""
    base = {"status": "ok", "data": "imdb", "split": "4000/1000/1000 seed 42", "max_length": 256}
    base |= {"batch_size": 16, "max_epochs": 3, "variant": "", **dict.fromkeys(MEASURED, 1.0)}
    base |= {"memory_method": "torch MemTracker"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_runs_of_different_models_are_never_averaged_together():
    runs = _runs(
        [
            {"model": "minilm", "strategy": "full", "lr": 1e-4, "seed": 0, "test_acc": 0.80, "val_acc": 0.8},
            {"model": "minilm", "strategy": "full", "lr": 1e-4, "seed": 1, "test_acc": 0.90, "val_acc": 0.8},
            {"model": "distilbert", "strategy": "full", "lr": 1e-4, "seed": 0, "test_acc": 0.50, "val_acc": 0.5},
        ]
    )
    stats = summarise(runs).set_index("model")
    assert stats.loc["minilm", "test_acc_mean"] == pytest.approx(0.85)
    assert stats.loc["minilm", "seeds"] == 2 and stats.loc["distilbert", "seeds"] == 1
    assert math.isnan(stats.loc["distilbert", "test_acc_std"])


def test_the_reading_draws_no_conclusions_from_a_small_test_split():
    runs = _runs(
        [
            {"model": "m", "strategy": s, "lr": 1e-3, "seed": 0, "split": "64/32/32 seed 42 (test split under 200)"}
            for s in ("full", "lora")
        ]
    )
    sentences = reading(best_per_strategy(summarise(runs)))
    assert sentences == [
        "these runs were sliced for a look (test split under 200): no conclusions are drawn from them."
    ]


def test_best_configuration_is_chosen_on_validation_not_test():
    runs = _runs(
        [
            {"model": "m", "strategy": "lora", "lr": 1e-3, "seed": 0, "test_acc": 0.90, "val_acc": 0.70},
            {"model": "m", "strategy": "lora", "lr": 1e-4, "seed": 0, "test_acc": 0.80, "val_acc": 0.85},
            {"model": "m", "strategy": "full", "lr": 1e-4, "seed": 0, "test_acc": 0.85, "val_acc": 0.85},
        ]
    )
    best = best_per_strategy(summarise(runs)).set_index("strategy")
    assert best.loc["lora", "lr"] == 1e-4
    assert any(s.startswith("lora reaches 94.1% of full's test accuracy") for s in reading(best.reset_index()))


def test_a_memory_ratio_across_batch_sizes_names_them():
    runs = _runs(
        [
            {"model": "m", "strategy": "full", "lr": 1e-4, "seed": 0, "batch_size": 32, "tensor_memory_mib": 1800.0},
            {"model": "m", "strategy": "lora", "lr": 1e-3, "seed": 0, "batch_size": 16, "tensor_memory_mib": 720.0},
            {"model": "m", "strategy": "frozen", "lr": 1e-3, "seed": 0, "batch_size": 32, "tensor_memory_mib": 230.0},
        ]
    )
    sentences = reading(best_per_strategy(summarise(runs)))
    (lora,) = [s for s in sentences if s.startswith("lora reaches")]
    (frozen,) = [s for s in sentences if s.startswith("frozen reaches")]
    assert "40% of its training memory (tensors) at batch 16 vs 32 and" in lora
    assert "of its training memory (tensors) and" in frozen  # same batch: nothing to say


def test_many_jobs_are_named_in_ranges_per_sweep_in_merge_order():
    """A merged 72-run grid named its 66 reused jobs one by one, a paragraph of names."""
    b = [*range(1, 17), *range(18, 24)]
    runs = pd.DataFrame({"job": [*range(1, 24), *b, 2], "sweep": ["s/seed1"] * 23 + ["s/seed2"] * 22 + ["s/seed0"]})
    assert _jobs(runs) == "Jobs 1–23 of seed1; 1–16, 18–23 of seed2; 2 of seed0"
    assert _jobs(pd.DataFrame({"job": [5, 1, 2, 7, 8, 9]})) == "Jobs 1, 2, 5, 7–9"
    assert _jobs(pd.DataFrame({"job": [3]})) == "Job 3"


def test_a_tie_on_validation_is_not_broken_by_test():
    runs = _runs(
        [
            {"model": "m", "strategy": "gradual", "lr": 3e-4, "seed": 0, "test_acc": 0.895, "val_acc": 0.896},
            {"model": "m", "strategy": "gradual", "lr": 1e-4, "seed": 0, "test_acc": 0.890, "val_acc": 0.896},
        ]
    )
    runs.loc[runs["lr"] == 3e-4, "fit_time_s"] = 900.0
    runs.loc[runs["lr"] == 1e-4, "fit_time_s"] = 800.0
    (best,) = best_per_strategy(summarise(runs)).itertuples()
    assert best.lr == 1e-4  # the shorter fit, not the better test accuracy


def test_the_verdict_and_the_baseline_follow_the_numbers():
    """Most accurate first; the leanest and the quickest of those within 0.01 (or two SE) of it; TF-IDF's margin."""
    rows = []
    figures = [("full", 0.890, 1300, 900), ("lora", 0.885, 950, 950), ("frozen", 0.84, 130, 100)]
    figures += [("gradual", 0.870, 1200, 700)]
    for strategy, acc, memory, time in figures:
        for seed, noise in enumerate((-0.001, 0.0, 0.001)):
            measured = {"test_acc": acc + noise, "val_acc": acc, "tensor_memory_mib": memory, "fit_time_s": time}
            rows.append({"model": "m", "strategy": strategy, "lr": 1e-4, "seed": seed, **measured})
    sentences = reading(best_per_strategy(summarise(_runs(rows))), baseline_test=0.878)
    assert sentences[-1] == (
        "verdict: most accurate full (0.890); if memory matters, lora (0.885, 950 vs 1,300 MiB) "
        "(within 0.010 of the best counts as close)."
    )
    baseline = next(s for s in sentences if s.startswith("against TF-IDF"))
    assert "(test 0.878, whole review)" in baseline and "full +0.012" in baseline and "frozen -0.038" in baseline


def test_an_analytic_memory_figure_is_shown_as_one_and_named_in_the_reading():
    """Where MemTracker was missing for some runs, the table says which figure is the analytic count and the
    reading names the strategies whose memory it understates."""
    rows = [
        {"model": "m", "strategy": strategy, "lr": 1e-4, "seed": 0, "memory_method": method}
        for strategy, method in [("full", "torch MemTracker"), ("frozen", "analytic"), ("lora", "torch MemTracker")]
    ]
    stats = summarise(_runs(rows))
    table = display_table(stats).set_index("strategy")
    assert dict(table["memory method"]) == {r["strategy"]: r["memory_method"] for r in rows}
    assert "memory method" not in display_table(summarise(_runs(rows[::2]))).columns  # shared: the header says it
    (note,) = [s for s in reading(best_per_strategy(stats)) if "analytic" in s]
    assert note.startswith("the tensor memory of frozen is the analytic count")


def test_job_folder_names_keep_swept_values_and_drop_slashes(tmp_path):
    overrides = "data.source.data_files=/a/very/long/path.csv,optimizer.lr=0.001,seed=0,strategy=lora"
    assert job_dirname(overrides) == "lora_lr0.001_seed0"  # pasteable: no `=`, `,` or `/`
    sweep = {"task": ["strategy=full,lora", "optimizer.lr=0.001", "data.source.data_files=/a/very/long/path.csv"]}
    record = {"hydra": {"overrides": sweep, "sweeper": {"params": {"seed": "0,1"}}}}
    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(record))
    assert job_dirname(overrides, str(tmp_path)) == "lora_seed0"  # in a sweep: only what the sweep varies
    assert job_dirname("data=files,data.batch_size=8", max_len=10) == "files_batc"
    assert job_dirname("strategy.layers=[-1,-2],strategy=frozen") == "frozen_layers-1--2"  # a list's commas kept


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"run": 1})

    def crash(*args):
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing the temp file and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json(target, {"run": 2, "padding": "x" * 100_000})
    assert json.loads(target.read_text()) == {"run": 1}
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_a_list_override_with_spaces_stays_one_override():
    typed = [
        ["strategy.layers=[-1, -2]", "model.attention_dropout=0.0"],
        ["strategy.layers=[-1]", "model.attention_dropout=0.0"],
    ]
    runs = pd.DataFrame({"overrides": [shlex.join(o) for o in typed]})  # as collect_runs writes the column
    assert _variants(runs["overrides"]) == ["strategy.layers=[-1, -2]", "strategy.layers=[-1]"]
    assert common_overrides(runs) == ["model.attention_dropout=0.0"]


def test_report_py_on_a_folder_of_runs_that_is_not_a_sweep_reports_them_there(tiny_sweep, tmp_path):
    """The documented fallback: single runs gathered in a folder (no multirun.yaml) are reported like a sweep."""
    gathered = tmp_path / "gathered"
    for job in ("0_full_seed0", "3_lora_seed1"):
        shutil.copytree(tiny_sweep / job, gathered / job)
    result = run_script("report.py", str(gathered))
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(pd.read_csv(gathered / "results.csv")["strategy"]) == ["full", "lora"]
    assert (gathered / "report.html").is_file() and f"Report: {gathered / 'report.html'}" in result.stdout
