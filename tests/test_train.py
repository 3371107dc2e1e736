"""End to end through `python train.py`: multirun outputs, TensorBoard tags, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import events_dir, run_script, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

PROMISED_TAGS = {
    "train/loss_step",
    "train/loss_epoch",
    "train/acc",
    "val/acc",
    "val/f1",
    "val/auroc",
    "val/loss",
    "test/acc",
    "val/examples",
    "test/examples",
    "perf/epoch_time_s",
    "perf/step_time_ms",
    "perf/train_samples_per_s",
    "perf/train_tokens_per_s",
    "perf/peak_memory_mb",
    "perf/train_memory_mb",
    "memory/total_mib",
    "memory/activations_mib",
    "memory/optimizer_state_mib",
    "params/trainable",
    "params/total",
    "params/trainable_pct",
    "run/fit_time_s",
    "run/train_samples_per_s",
    "run/peak_memory_mb",
    "run/train_memory_mb",
}


def scalar_tags(run_dir: Path) -> set[str]:
    accumulator = EventAccumulator(events_dir(run_dir))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def custom_scalars_layout(run_dir: Path) -> dict[str, list[str]]:
    """The Custom Scalars page a run carries: category -> the tag patterns of its charts."""
    accumulator = EventAccumulator(events_dir(run_dir))
    accumulator.Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(accumulator.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    return {c.title: [tag for chart in c.chart for tag in chart.multiline.tag] for c in layout.category}


def test_multirun_gives_one_result_per_strategy(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "strategy=full,frozen,lora,gradual",
        *tiny_overrides(tiny_models["bert"], reviews_csv),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert len(jobs) == 4
    # one folder per job, named by its swept values (also the run's name in TensorBoard), strategy first
    assert [job.name for job in jobs] == ["0_full", "1_frozen", "2_lora", "3_gradual"]  # the swept values only
    # before the wait: each job forecasts itself and the jobs after it
    assert "this is job 1 of 4; the 3 after it take about" in result.stdout
    # the last screen: a table that fits 100 columns, then where the report is and how to open TensorBoard
    out = result.stdout.splitlines()
    top = next(i for i, line in enumerate(out) if line.split()[:1] == ["strategy"] and "test acc" in line)
    assert all(len(line) <= 100 for line in out[top : top + 5]), out[top : top + 5]
    assert sorted(line.split()[0] for line in out[top + 1 : top + 5]) == ["frozen", "full", "gradual", "lora"]
    assert f"Report: {sweep / 'report.html'}" in result.stdout
    assert f"TensorBoard: tensorboard --logdir {sweep}" in result.stdout
    assert len({r.get("run_id") for r in map(json.loads, (j.joinpath("metrics.json").read_text() for j in jobs))}) == 4
    records = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert [r["strategy"] for r in records] == ["full", "frozen", "lora", "gradual"]
    # results.csv: gradual's memory is a range, its first stage below its peak; the others' are one figure
    results = pd.read_csv(sweep / "results.csv").set_index("strategy")
    first, peak = results["tensor_memory_first_stage_mib"], results["tensor_memory_mib"]
    assert first["gradual"] < peak["gradual"] and (first.drop("gradual") == peak.drop("gradual")).all()
    pct = {r["strategy"]: r["cost"]["params/trainable_pct"] for r in records}
    assert pct["full"] == 100 and pct["lora"] < 100 and pct["frozen"] < 100
    # provenance: what each run ran on; one split for all four strategies
    assert {r["provenance"]["packages"]["torch"] for r in records} == {torch.__version__}
    assert len({json.dumps(r["provenance"]["split_fingerprints"], sort_keys=True) for r in records}) == 1
    assert set(records[0]["provenance"]["split_fingerprints"]) == {"train", "validation", "test"}
    for job, record in zip(jobs, records, strict=True):
        assert 0 <= record["test"]["test/acc"] <= 1 and 0 <= record["val"]["val/acc"] <= 1
        # the slicing is on record, with the examples the figures rest on: test_size 32, val 2 batches of 32
        assert record["slicing"]["limit_test_batches"] == 2 and record["slicing"]["fast_dev_run"] is False
        assert record["test"]["test/examples"] == 32 and record["val"]["val/examples"] == 32
        assert record["cost"]["perf/train_samples_per_s"] > 0 and record["cost"]["perf/peak_memory_mb"] > 0
        assert Path(record["checkpoint"]).is_file() and record["cost"]["checkpoint_size_mb"] > 0
        assert record["memory"]["at_peak_mib"]["total"] > 0  # by category, the largest of the tracked steps
        # gradual (6 steps, stages from steps 0, 1, 3): its second and third stages tracked at their second step
        # (the head alone has one); the rest once, at the second step
        stages = [(s["stage"], s["step"]) for s in record["memory"].get("stages", [{"stage": 0, "step": 1}])]
        gradual = record["strategy"] == "gradual"
        assert stages == ([(1, 2), (2, 4)] if gradual else [(0, 1)])
        assert record["memory"]["step"] == (4 if gradual else 1)  # the largest: everything trainable
        # per-example predictions of the reported weights: the metrics follow from them
        predictions = pd.read_csv(job / "predictions.csv")
        for split, key in (("validation", "val"), ("test", "test")):
            rows = predictions[predictions["split"] == split]
            assert len(rows) == record[key][f"{key}/examples"], (job.name, split)
            right = (rows["label"] == rows["predicted"]).mean()
            assert right == pytest.approx(record[key][f"{key}/acc"], abs=1e-6), (job.name, split)
        assert (predictions[["p_negative", "p_positive"]].sum(axis=1) - 1).abs().max() < 1e-5
        tags = scalar_tags(job)
        missing = PROMISED_TAGS - tags
        assert not missing, f"{job.name}: missing TensorBoard tags {missing}"
        # one page compares the sweep: every chart of the layout draws tags the run has
        layout = custom_scalars_layout(job)
        assert set(layout) == {"accuracy", "time", "memory"}
        assert all(any(re.match(p, tag) for tag in tags) for patterns in layout.values() for p in patterns), layout
    # every strategy scored the same examples: the report pairs them
    assert len({tuple(pd.read_csv(job / "predictions.csv")["example_id"]) for job in jobs}) == 1


def test_logger_many_sends_every_metric_and_the_settings_to_tensorboard_csv_and_mlflow(
    tmp_path, tiny_models, reviews_csv
):
    """Read back through each tool's own reader: TensorBoard's event files, the CSV file, MLflow's client."""
    mlflow = pytest.importorskip("mlflow")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
    args = ["strategy=lora", "logger=many", f"logger.mlflow.tracking_uri={store}", *overrides]
    result = run_script("train.py", *args, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    name = f"lora_{record['run_id']}"  # the run's name in each tool

    tensorboard = scalar_tags(run_dir)
    assert tensorboard >= PROMISED_TAGS and "hparams/test_acc" in tensorboard
    csv_dir = run_dir / "csv" / name
    rows = pd.read_csv(csv_dir / "metrics.csv")
    assert set(rows.columns) - {"step"} == tensorboard
    assert rows["test/acc"].dropna().tolist() == [record["test"]["test/acc"]]
    assert rows["run/fit_time_s"].dropna().tolist() == [pytest.approx(record["cost"]["perf/fit_time_s"])]
    hparams = yaml.safe_load((csv_dir / "hparams.yaml").read_text())
    assert hparams["strategy"] == "lora" and hparams["lr"] == record["hparams"]["lr"]

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("ftcompare").experiment_id])
    assert run.info.run_name == name and run.info.status == "FINISHED"
    assert set(run.data.metrics) == tensorboard
    assert run.data.metrics["test/acc"] == pytest.approx(record["test"]["test/acc"])
    assert run.data.metrics["memory/total_mib"] == pytest.approx(record["memory"]["at_peak_mib"]["total"], rel=1e-6)
    assert run.data.params["strategy"] == "lora" and float(run.data.params["lr"]) == record["hparams"]["lr"]
    assert run.data.params["data/max_length"] == "64" and run.data.tags["run_dir"] == str(run_dir)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
    assert steps == sorted(steps) and len(steps) == 6  # 2 epochs x 3 batches, every step


NOISE = ("LOAD REPORT", "Tip:", "GPU available", "Warning", "Flattening", "Tokenising", "Total FLOPs", "INFO")


def test_the_console_shows_the_run_and_its_log_file_keeps_everything(tmp_path, tiny_models, reviews_csv):
    quiet, verbose = tmp_path / "quiet", tmp_path / "verbose"
    overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
    result = run_script("train.py", *overrides, f"hydra.run.dir={quiet}")
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert not [word for word in NOISE if word in console], console[-3000:]
    record = json.loads((quiet / "metrics.json").read_text())
    # what it runs, where it writes, under which id; then the result and where it went
    assert f"lora on {tiny_models['bert']}: lr 0.002, batch 8, 2 epochs" in result.stdout
    assert f"(run {record['run_id']})" in result.stdout and "metrics written to" in result.stdout
    assert "train/val/test 64/32/32 (batches limited: train 3, val 2, test 2)" in result.stdout
    log = (quiet / "train.log").read_text()
    assert all(word in log for word in ("GPU available", "LOAD REPORT", "forecast:", "test acc")), log[-3000:]

    shown = run_script("train.py", *overrides, "verbose=true", "data.train_subset=32", f"hydra.run.dir={verbose}")
    assert shown.returncode == 0 and "GPU available" in shown.stdout + shown.stderr
    assert "train/val/test 32 of 64/32/32" in shown.stdout  # a learning curve's point says what it trains on

    # debug=fdr: the first line says what Lightning's fast_dev_run runs, not the epochs and sizes it ignores
    look = run_script("train.py", *overrides, "debug=fdr", f"hydra.run.dir={tmp_path / 'fdr'}")
    assert look.returncode == 0, look.stderr[-3000:]
    assert "fast_dev_run: 1 batch(es) each of train/val/test, no checkpoint" in look.stdout
    assert "2 epochs" not in look.stdout


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("+strategy.rank=4", "strategy.rank"),
        ("data.source.data_files=/no/such/file.csv", "data.source.data_files"),
    ],
)
def test_bad_input_fails_fast_with_one_clear_message(tmp_path, tiny_models, reviews_csv, override, setting):
    """The command line end of tests/test_validation.py's matrix: exit code 2, one line, no traceback."""
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", *tiny_overrides(tiny_models["bert"], reviews_csv), override, f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and setting in errors[0] and "Fix:" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "error:" not in result.stdout  # said once
    assert not run_dir.exists()  # refused before it started: no folder that looks like a run


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("strategy=nope", ["strategy", "full", "lora"]),
        ("model=nope", ["model", "minilm"]),
        ("data=nope", ["data", "imdb"]),
        ("optimizer.lrr=1e-4", ["optimizer.lrr", "+optimizer.lrr"]),
    ],
)
def test_unknown_options_and_keys_are_refused_by_hydra_before_the_run(tmp_path, override, words):
    result = run_script("train.py", override, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1 and all(w in result.stderr for w in words), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "metrics.json").exists()


def test_hub_model_without_network_points_to_the_embedded_model(tmp_path, reviews_csv):
    result = run_script(
        "train.py",
        "model=distilbert",
        "data=files",
        f"data.source.data_files={reviews_csv}",
        f"hydra.run.dir={tmp_path}",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert "model.name_or_path='distilbert-base-uncased'" in result.stderr and "model=minilm" in result.stderr


@pytest.mark.slow
def test_real_embedded_model_trains_a_few_steps(tmp_path):
    result = run_script(
        "train.py", "strategy=lora", "debug=limit", "callbacks.progress_bar=null", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["strategy"] == "lora" and record["model"].endswith("model")
    assert record["cost"]["params/trainable_pct"] < 2
    assert record["hparams"]["precision"] in {"bf16-mixed", "32-true"}


def test_hydra_full_error_shows_the_whole_traceback(tmp_path):
    result = run_script("train.py", "optimizer.lr=0", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_the_peft_and_bias_strategies_run_end_to_end(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides(tiny_models["distilbert"], reviews_csv)
    result = run_script("train.py", "-m", "strategy=bitfit,ia3,lora_all,dora", *overrides, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["strategy"]: r for r in (json.loads(p.read_text()) for p in sweep.glob("*/metrics.json"))}
    assert set(records) == {"bitfit", "ia3", "lora_all", "dora"}
    pct = {name: r["cost"]["params/trainable_pct"] for name, r in records.items()}
    assert all(0 < p < 100 for p in pct.values()), pct
    assert pct["ia3"] < pct["dora"] < pct["lora_all"], pct  # a few vectors < q/v adapters < adapters everywhere


def test_a_model_saved_with_a_head_for_other_labels_gets_a_new_head_for_the_datas(tmp_path, tiny_models, reviews_csv):
    """A 2-label sentiment classifier fine-tuned on 3-class data: one log line, a 3-way head, training runs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classifier = tmp_path / "two_labels"
    AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2).save_pretrained(classifier)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(classifier)
    rows = pd.read_csv(reviews_csv).values.tolist()
    three = tmp_path / "three.csv"
    pd.DataFrame([[text, i % 3] for i, (text, _) in enumerate(rows)], columns=["text", "label"]).to_csv(
        three, index=False
    )
    overrides = [o for o in tiny_overrides(str(classifier), str(three)) if not o.startswith("data.label_names")]
    run_dir = tmp_path / "run"
    result = run_script("train.py", "strategy=full", *overrides, "data.label_names=[a,b,c]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the model's classification head has 2 labels, the data 3: a new head" in (run_dir / "train.log").read_text()
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert {"p_a", "p_b", "p_c"} <= set(predictions.columns) and set(predictions["label"]) == {"a", "b", "c"}


def test_an_output_folder_in_the_way_is_refused_before_hydra_makes_it(tmp_path, tiny_models, reviews_csv):
    """hydra.run.dir on (or under) a file, hydra.sweep.dir under one: one line, exit 2, the file untouched."""
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    for setting, path, words in (
        ("hydra.run.dir", blocker, "is a file"),
        ("hydra.run.dir", blocker / "run", f"is under a file ({blocker})"),
        ("hydra.sweep.dir", blocker / "sweep", f"is under a file ({blocker})"),
    ):
        args = (["-m"] if setting == "hydra.sweep.dir" else []) + ["strategy=frozen", f"{setting}={path}"]
        result = run_script("train.py", *args, *tiny_overrides(tiny_models["bert"], reviews_csv), cwd=tmp_path)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
        assert f"{setting}={path} {words}" in errors[0] and "Fix:" in errors[0] and "Traceback" not in result.stderr
        assert blocker.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_without_a_checkpoint_callback_val_and_test_are_scored_on_the_last_epoch(tmp_path, tiny_models, reviews_csv):
    """`callbacks=none`: no best checkpoint to choose; Lightning's own checkpoint of the last epoch (in the
    TensorBoard run folder) is what val and test report, as the README's outputs table says."""
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("callbacks.")]
    run_dir = tmp_path / "run"
    result = run_script("train.py", "strategy=full", "callbacks=none", *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    checkpoint = Path(record["checkpoint"])
    assert checkpoint.name == "epoch=1-step=6.ckpt" and checkpoint.parent.parent.parent.name == "tensorboard"
    assert [p.name for p in run_dir.rglob("*.ckpt")] == [checkpoint.name]  # no best-by-val/acc, no last.ckpt
    accumulator = EventAccumulator(events_dir(run_dir))
    accumulator.Reload()
    last_validation = accumulator.Scalars("val/acc")[-1]
    assert (last_validation.step, last_validation.value) == (5, pytest.approx(record["val"]["val/acc"]))
