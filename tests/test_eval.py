"""Using a trained checkpoint: `eval.py` re-evaluates it with its run's settings (the same val and test metrics as
training reported, to the last bit, although training scored val during fit and did not validate the best checkpoint
again); `predict.py` labels new texts (on the test split: training's accuracy)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import events_dir, run_script, tiny_overrides, write_csv
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ftcompare.runs import RESOLVED_CONFIG, run_config


@pytest.mark.parametrize(("strategy", "split", "reported"), [("lora", "test", "test"), ("frozen", "validation", "val")])
def test_eval_gives_the_metrics_training_reported(tmp_path, tiny_run, strategy, split, reported):
    record = tiny_run(strategy)

    result = run_script(
        "eval.py", f"ckpt_path={record['checkpoint']}", f"split={split}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert evaluated["strategy"] == strategy and evaluated["split"] == split
    assert evaluated["metrics"] == record[reported]  # exactly
    assert evaluated["provenance"]["split_fingerprints"] == record["provenance"]["split_fingerprints"]
    # per example too: the run's predictions of that split (for validation, recorded in the checkpoint during fit)
    ours = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    trained = pd.read_csv(Path(record["checkpoint"]).parents[1] / "predictions.csv")
    pd.testing.assert_frame_equal(ours, trained[trained["split"] == split].reset_index(drop=True))


def test_the_best_checkpoint_is_not_validated_again(tiny_run):
    """val comes from the validation that scored the best checkpoint's weights during fit: one val/acc point per
    epoch in TensorBoard, none more at the end (the test split is scored once, at the end)."""
    record = tiny_run("lora")
    accumulator = EventAccumulator(events_dir(Path(record["checkpoint"]).parents[1]))
    accumulator.Reload()
    assert len(accumulator.Scalars("val/acc")) == record["epochs_run"]
    assert len(accumulator.Scalars("test/acc")) == 1
    assert record["val"]["val/acc"] == max(event.value for event in accumulator.Scalars("val/acc"))


def test_eval_of_a_file_outside_a_run_is_a_clear_error(tmp_path):
    stray = tmp_path / "model.ckpt"
    stray.write_bytes(b"")
    result = run_script("eval.py", f"ckpt_path={stray}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2 and result.stderr.startswith("error: ckpt_path=") and "Fix:" in result.stderr


@pytest.mark.parametrize("strategy", ["gradual", "lora"])
def test_predict_labels_texts_and_reproduces_the_test_accuracy(tmp_path, tiny_run, strategy):
    record = tiny_run(strategy)
    cfg = OmegaConf.load(Path(record["checkpoint"]).parents[1] / ".hydra" / "config.yaml")
    test = instantiate(cfg.data, _convert_="all").raw_splits()["test"]
    inputs = tmp_path / "test.csv"
    with inputs.open("w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], *zip(test["text"], test["labels"], strict=True)])

    result = run_script(
        "predict.py", f"ckpt_path={record['checkpoint']}", f"input={inputs}", f"hydra.run.dir={tmp_path / 'p'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(test) and [p["text"] for p in lines] == test["text"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 and p["label"] in cfg.data.label_names for p in lines)
    names = list(cfg.data.label_names)
    accuracy = sum(names.index(p["label"]) == y for p, y in zip(lines, test["labels"], strict=True)) / len(test)
    assert accuracy == pytest.approx(record["test"]["test/acc"])


def test_predict_takes_one_text_or_a_named_column(tmp_path, tiny_run):
    record = tiny_run("lora")
    one = run_script(
        "predict.py", f"ckpt_path={record['checkpoint']}", "text=A moving film.", f"hydra.run.dir={tmp_path / 'q'}"
    )
    assert one.returncode == 0 and json.loads(one.stdout.strip().splitlines()[-1])["text"] == "A moving film."
    assert f"predictions written to {tmp_path / 'q' / 'predictions.jsonl'}" in one.stderr

    texts = ["A moving film.", "Dull and far too long.", "Fine."]
    renamed = write_csv(tmp_path / "renamed.csv", [[text] for text in texts], header=("review",))
    ckpt = f"ckpt_path={record['checkpoint']}"
    other = run_script("predict.py", ckpt, f"input={renamed}", "text_column=review", f"hydra.run.dir={tmp_path / 'r'}")
    assert other.returncode == 0, other.stderr[-3000:]
    assert len((tmp_path / "r" / "predictions.jsonl").read_text().splitlines()) == 3
    missing = run_script("predict.py", ckpt, f"input={renamed}", f"hydra.run.dir={tmp_path / 's'}")
    assert missing.returncode == 2 and "has no column 'text'; it has ['review']" in missing.stderr


def test_a_run_trained_before_a_setting_changed_is_read_in_todays_terms(tmp_path):
    """Frozen runs from before `strategy.layers` read the last layer (a run that names its layers keeps them);
    gradual's epoch schedule keys are dropped, its other settings kept."""
    for strategy, upgraded in [
        ({"name": "frozen", "pooling": "mean"}, {"name": "frozen", "pooling": "mean", "layers": [-1]}),
        ({"name": "frozen", "layers": [-1, -2]}, {"name": "frozen", "layers": [-1, -2]}),
        ({"name": "gradual", "unfreeze_every": 1, "lr_decay": 2.6, "lr": 1e-4}, {"name": "gradual", "lr": 1e-4}),
    ]:
        run = tmp_path / str(len(list(tmp_path.iterdir())))
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text("{}")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "best.ckpt").write_bytes(b"")
        OmegaConf.save({"strategy": strategy}, run / RESOLVED_CONFIG)
        assert OmegaConf.to_container(run_config(run / "checkpoints" / "best.ckpt").strategy) == upgraded


def test_eval_on_another_file_drops_the_runs_filter_that_does_not_apply_to_it(tmp_path, tiny_models, reviews_csv):
    """A run trained on the rows of one source (data.where) evaluated on a file with only text and label."""
    rows = pd.read_csv(reviews_csv).values.tolist()
    labelled = [[text, label, "imdb" if i % 4 else "rt"] for i, (text, label) in enumerate(rows)]
    sourced = write_csv(tmp_path / "sourced.csv", labelled, header=("text", "label", "source"))
    overrides = [o for o in tiny_overrides(tiny_models["bert"], sourced) if "limit_test" not in o]
    run_dir = tmp_path / "run"
    trained = run_script(
        "train.py", "strategy=frozen", *overrides, "data.where={source: imdb}", f"hydra.run.dir={run_dir}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = json.loads((run_dir / "metrics.json").read_text())["checkpoint"]

    plain = write_csv(tmp_path / "plain.csv", rows)  # text, label: no source column
    result = run_script(
        "eval.py", f"ckpt_path={checkpoint}", f"+data.source.data_files={plain}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "no column 'source' in this data, so its filter 'source'='imdb' is dropped"
        in (tmp_path / "eval" / "eval.log").read_text()
    )
    record = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert record["data"]["source"]["data_files"] == plain and record["metrics"]["test/examples"] == 32

    # in training the same filter on a file without the column is refused in one line
    overrides = tiny_overrides(tiny_models["bert"], plain)
    refused = run_script(
        "train.py", "strategy=frozen", *overrides, "data.where={source: imdb}", f"hydra.run.dir={tmp_path / 'r'}"
    )
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-3000:]
    assert "data.where filters on column 'source'" in errors[0] and "+data.where=null" in errors[0]
