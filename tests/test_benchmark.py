"""`make bench` keeps working: both loops run every strategy and the table holds what we promise.

Figures are printed, never asserted: only the structure and the arithmetic behind them are tested.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_overrides
from transformers import BertConfig, BertForSequenceClassification

from ftcompare.benchmark import run, study_strategies
from ftcompare.benchmark.clock import StepClock, training_flops


def test_flops_of_a_minilm_shaped_model_match_the_anchor():
    """all-MiniLM-L6-v2: about 18 GFLOP per 256-token example for forward + backward (shared/anchors.md)."""
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
    assert set(record["runs"]) == set(study_strategies())
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
