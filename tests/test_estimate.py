"""estimate.py: the predicted training memory matches what a run measures (the same tracker, under fake
tensors), a sweep gives one table, and bad input is refused in one line."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import quiet_trainer, run_script, tiny_overrides

from ftcompare.builders import build_datamodule, build_module
from ftcompare.callbacks import TrainingMemory
from ftcompare.errors import ConfigError
from ftcompare.memory.estimate import estimate

STRATEGIES = ["full", "lora", "frozen", "gradual"]
HEAD_ALONE = ["strategy.head_only=0.9", "strategy.all_from=0.9"]  # gradual's first stage for a short run's steps


def measured(compose_cfg, overrides: list[str], max_epochs: int = 1) -> TrainingMemory:
    cfg = compose_cfg(*overrides)
    tracked = TrainingMemory(at_step=1)
    trainer = quiet_trainer(  # at the precision the estimate reads from the same config
        precision=cfg.trainer.precision,
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[tracked],
    )
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    return tracked


@pytest.mark.parametrize("batch_size", [4, 8])
def test_the_estimate_is_within_10_percent_of_the_measured_peak(compose_cfg, tiny_models, reviews_csv, batch_size):
    """Four strategies, on this CPU (view=cpu), at a batch shape the reviews fill (dynamic padding pads to the
    longest review, which is longer than max_length)."""
    for strategy in STRATEGIES:
        overrides = [f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv)]
        overrides += [f"data.batch_size={batch_size}", "data.max_length=128"]
        overrides += HEAD_ALONE if strategy == "gradual" else []
        record = measured(compose_cfg, overrides).record
        assert record["batch_shape"] == [batch_size, 128]
        (row, *_) = estimate(compose_cfg(*overrides, "estimate.view=cpu", config="estimate"))
        total = record["at_peak_mib"]["total"]
        for category in ("parameters", "gradients", "optimizer_state"):
            # LoRA's peak may fall in the backward pass just before its adapters' few gradients exist
            expected = pytest.approx(record["at_peak_mib"][category], rel=0.01, abs=0.01 * total)
            assert row["at_peak_mib"][category] == expected, (strategy, category)
        assert row["at_peak_mib"]["total"] == pytest.approx(record["at_peak_mib"]["total"], rel=0.1), (strategy, row)


def test_gradual_is_tracked_at_each_stage_and_the_estimate_predicts_its_last(compose_cfg, tiny_models, reviews_csv):
    """Its trainable set, and with it the memory, grows as layers unfreeze; the run's figure is the largest."""
    overrides = ["strategy=gradual", *tiny_overrides(tiny_models["bert"], reviews_csv), "data.max_length=128"]
    schedule = ["strategy.head_only=0.3", "strategy.all_from=0.7"]  # 6 steps: stages from steps 0, 2 and 4
    tracked = measured(compose_cfg, [*overrides, *schedule, "trainer.max_epochs=3"], max_epochs=3)
    stages = tracked.record["stages"]
    assert [(s["stage"], s["step"]) for s in stages] == [(0, 1), (1, 3), (2, 5)]  # each stage's second step
    totals = [s["total_mib"] for s in stages]
    assert totals == sorted(totals) and totals[0] < totals[-1] and tracked.record["at_peak_mib"]["total"] == totals[-1]
    assert [s["parameters_trainable_mib"] for s in stages] == sorted({s["parameters_trainable_mib"] for s in stages})
    first, last = estimate(compose_cfg(*overrides, "trainer.max_epochs=3", "estimate.view=cpu", config="estimate"))
    assert (first["stage"], last["stage"], last["stages"]) == (0, 2, 3)
    assert last["at_peak_mib"]["total"] == pytest.approx(totals[-1], rel=0.1)
    assert first["at_peak_mib"]["total"] == pytest.approx(totals[0], rel=0.1)


def test_the_gpu_view_drops_the_cpu_attention_matrices(compose_cfg, tiny_models, reviews_csv):
    """Full fine-tuning holds less under the GPU's kernels; parameters and optimizer state do not move."""
    overrides = ["strategy=full", *tiny_overrides(tiny_models["bert"], reviews_csv), "data.max_length=256"]
    cpu, gpu = (
        estimate(compose_cfg(*overrides, f"estimate.view={v}", config="estimate"))[0] for v in ("cpu", "cuda_like")
    )
    assert gpu["at_peak_mib"]["activations"] < 0.8 * cpu["at_peak_mib"]["activations"]
    assert gpu["at_peak_mib"]["optimizer_state"] == cpu["at_peak_mib"]["optimizer_state"]
    assert gpu["fits_gb"] == [8, 16, 24, 40, 80] and "fits_gb" not in cpu


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("data.batch_size=0", "data.batch_size"),
        ("strategy.name=nope", "nope"),
        ("model.name_or_path=/no/such/model", "does not exist"),
        ("estimate.view=gpu", "estimate.view"),
        ("estimate.gpu_sizes_gb=[0]", "estimate.gpu_sizes_gb"),
    ],
)
def test_bad_input_is_refused(compose_cfg, tiny_models, reviews_csv, override, words):
    cfg = compose_cfg(*tiny_overrides(tiny_models["bert"], reviews_csv), override, config="estimate")
    with pytest.raises(ConfigError, match=words):
        estimate(cfg)


def test_a_sweep_writes_one_table_in_seconds_and_works_offline_for_the_hub_models(tmp_path, tiny_models):
    """bert-base-uncased from the config shipped for it (the hub cannot be reached here); an unknown config group
    option is refused before anything runs."""
    result = run_script(
        "estimate.py",
        "-m",
        "model=bert_base",
        "strategy=lora,gradual",
        "data.batch_size=8",
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "estimate.csv")
    assert len(table) == 1 + 2  # lora, gradual's first and last stage
    assert set(table["model"]) == {"bert-base-uncased"}
    bert = table[(table["model"] == "bert-base-uncased") & (table["strategy"] == "lora")]
    assert bert["parameters_frozen_mib"].iloc[0] == pytest.approx(109.48e6 * 4 / 2**20, rel=0.01)  # 109.5M params
    gradual = table[table["strategy"] == "gradual"].sort_values("stage")
    assert list(gradual["stage"]) == [0, 3] and gradual["total_mib"].is_monotonic_increasing  # 12 layers, 3 groups
    assert "fits on (GB)" in (tmp_path / "sweep" / "estimate.md").read_text()
    assert "fits on (GB)" in result.stderr + result.stdout
    refused = run_script("estimate.py", "model=nope", cwd=tmp_path)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr and "nope" in refused.stderr


@pytest.mark.slow
def test_on_the_real_model_the_estimate_is_within_10_percent(compose_cfg):
    """The embedded model, four strategies, a short max_length the reviews fill (docs/memory.md has two batch
    sizes at 256)."""
    batch_size = 8
    for strategy in STRATEGIES:
        overrides = [f"strategy={strategy}", f"data.batch_size={batch_size}", "data.max_length=64"]
        overrides += ["data.train_size=32", "data.val_size=16", "data.test_size=16"]
        overrides += HEAD_ALONE if strategy == "gradual" else []
        record = measured(compose_cfg, overrides).record
        assert record["batch_shape"] == [batch_size, 64]
        (row, *_) = estimate(compose_cfg(*overrides, "estimate.view=cpu", config="estimate"))
        assert row["at_peak_mib"]["total"] == pytest.approx(record["at_peak_mib"]["total"], rel=0.1), (strategy, row)
