"""`make bench` keeps working: both loops run every strategy and the table holds what we promise.

Figures are printed, never asserted: only the structure and the arithmetic behind them are tested.
"""

from __future__ import annotations

import json
import re

import lightning as L
import pytest
import torch
from helpers import quiet_trainer, tiny_overrides
from transformers import BertConfig, BertForSequenceClassification

from ftcompare.benchmark import run, study_strategies
from ftcompare.benchmark.clock import StepClock, training_flops
from ftcompare.benchmark.loops import Bench, TrainerModel
from ftcompare.benchmark.ops import run_ops
from ftcompare.benchmark.table import Study, study_hours
from ftcompare.builders import build_datamodule, build_module


def test_flops_of_a_minilm_shaped_model_match_the_anchor():
    """all-MiniLM-L6-v2: about 18 GFLOP per 256-token example for forward + backward (docs/reference-figures.md)."""
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    flops = training_flops(BertForSequenceClassification(config), batch=1, length=256)
    assert flops == pytest.approx(18.0e9, rel=0.02)


def test_steady_state_excludes_warmup_and_counts_from_the_last_warmup_step():
    clock = StepClock(torch.device("cpu"))
    clock.steps = [(t, 8, 800, 128) for t in (10.0, 11.0, 11.5, 12.0, 12.5)]  # first step slow
    figures = clock.steady(warmup=1)
    assert figures["samples_per_s"] == pytest.approx(4 * 8 / 2.5)
    assert figures["tokens_per_s"] == pytest.approx(4 * 800 / 2.5)
    assert figures["step_ms"] == pytest.approx(625)
    with pytest.raises(ValueError):
        clock.steady(warmup=0)


def test_bench_runs_both_loops_for_every_strategy(tiny_models, reviews_csv, tmp_path):
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if "limit_" not in o]
    text = run(overrides, study_strategies(), warmup=1, steps=2, eval_samples=16, out_dir=tmp_path)
    record = json.loads((tmp_path / "bench.json").read_text())
    for strategy, loops in record["runs"].items():
        for loop in ("ours", "trainer"):
            figures = loops[loop]
            assert figures["samples_per_s"] > 0 and figures["eval_samples_per_s"] > 0, (strategy, loop)
            assert figures["timed_steps"] == (8 if (strategy, loop) == ("frozen", "ours") else 2)
    assert (
        "flops_per_s" in record["runs"]["full"]["ours"] and "epoch1_samples_per_s" in record["runs"]["frozen"]["ours"]
    )
    assert (tmp_path / "bench.md").read_text() == text
    for strategy in study_strategies():
        assert f"| {strategy}" in text
    assert "ours / Trainer" in text and "model FLOPs utilisation" in text
    assert "experiment=compare` (4 strategies x 3 seeds, epochs 2 of 64 reviews" in text


def test_the_study_projection_adds_every_run_of_the_sweep():
    """Per seed: each strategy's own epochs; frozen's first epoch at its own rate, gradual's first stage (10%) at its
    own and the rest at full's; evaluation at eval rates."""
    runs = {
        "full": {"samples_per_s": 10.0, "eval_samples_per_s": 50.0},
        "frozen": {"samples_per_s": 1000.0, "epoch1_samples_per_s": 40.0, "eval_samples_per_s": 50.0},
        "lora": {"samples_per_s": 20.0, "eval_samples_per_s": 50.0},
        "gradual": {"samples_per_s": 40.0, "eval_samples_per_s": 50.0},
    }
    rows = {strategy: {"ours": figures} for strategy, figures in runs.items()}
    epochs = {"full": 3, "frozen": 10, "lora": 3, "gradual": 3}
    study = Study(list(runs), seeds=3, epochs=epochs, train=4000, val=1000, test=1000, first_stage={"gradual": 0.1})
    training = 3 * 400 + (100 + 9 * 4) + 3 * 200 + 3 * (0.1 * 100 + 0.9 * 400)
    evaluated = (3 + 10 + 3 + 3) * 1000 + 4 * 1000
    assert study_hours(rows, study) == pytest.approx(3 * (training + evaluated / 50.0) / 3600)
    del rows["lora"]
    assert study_hours(rows, study) is None


def test_the_bench_times_the_studys_strategies_by_default():
    assert study_strategies() == ["full", "frozen", "lora", "gradual"]  # conf/experiment/compare.yaml


@pytest.mark.parametrize("strategy", ["frozen", "gradual", "lora"])
def test_trainer_trains_the_parameters_our_loop_trains_first(compose_cfg, tiny_models, reviews_csv, strategy):
    """Hugging Face Trainer gets the strategy's own module, frozen as our loop's first step has it."""
    cfg = compose_cfg(f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv))
    first_step: set[str] = set()

    class FirstStep(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            first_step.update(n for n, p in pl_module.named_parameters() if p.requires_grad)

    module = build_module(cfg)
    quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[FirstStep()]).fit(
        module, datamodule=build_datamodule(cfg)
    )
    given = TrainerModel(build_module(cfg))
    assert {n.removeprefix("module.") for n, p in given.named_parameters() if p.requires_grad} == first_step != set()


def test_the_op_profile_times_every_strategy_on_the_same_batches(tiny_models, reviews_csv):
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if "limit_" not in o]
    strategies = ["full", "lora", "gradual", "frozen"]
    text = run_ops(Bench(overrides, strategies, warmup=1, steps=2), warmup=1, steps=2)
    header, _, *rows = text.split("\n\n")[1].splitlines()
    assert [c.strip() for c in header.strip("|").split("|")][1:] == strategies
    times = {row.split("|")[1].strip(): [float(c) for c in row.strip("|").split("|")[1:]] for row in rows}
    assert "aten::addmm" in times  # the linear layers' forward: every strategy runs it
    assert all(t > 0 for t in times["step, without the profiler"])
    assert all(t > 0 for t in times["aten::addmm"])  # times are printed, not compared: they follow the machine's load
    assert "Step time against full: lora " in text and "(lengths [" in text
    assert "the step's time if nothing else took any" in text
    shares = re.findall(r"(\w+) (\d+)% \((\d+) ms\)", text.split("Matmuls")[1])
    assert [s for s, _, _ in shares] == strategies and all(0 < int(p) < 100 for _, p, _ in shares), shares
