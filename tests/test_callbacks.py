"""The cost monitor's memory figures are per run: a small run after a big one reports the small peak,
and the training memory leaves out what the process held before the run. The forecast counts the whole run;
the progress bar of a resumed epoch has its total."""

from __future__ import annotations

import logging
import subprocess
import sys

import lightning as L
import pytest
import torch
from helpers import quiet_trainer, tiny_overrides
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from ftcompare.builders import build_datamodule, build_module
from ftcompare.callbacks import PeakMemory, ProgressBar, TrainingMemory
from ftcompare.callbacks.forecast import Forecast, duration


def touch(mb: int) -> torch.Tensor:
    return torch.ones(mb * 2**20 // 4)  # float32, pages written


def test_cpu_peak_memory_is_reset_between_runs():
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    big = touch(800)
    memory.sample()
    del big
    first = memory.peak_mb()

    memory.reset()
    small = touch(50)
    memory.sample()
    del small
    second = memory.peak_mb()
    assert first - second > 500, (first, second)


def test_memory_above_start_counts_only_what_the_run_added():
    held = touch(300)  # held before the run: in the process peak, not in the run's own figure
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    added = touch(200)
    memory.sample()
    assert 190 < memory.above_start_mb() < 260, memory.above_start_mb()
    assert memory.peak_mb() - memory.above_start_mb() > 290
    del held, added


# Run alone, as glibc's settings are per process: the heap keeps all it frees (as it does, by its own
# thresholds, for a long sweep process), and 8 MiB blocks come from the heap rather than mmap.
FREED_THEN_REUSED = """
import ctypes, torch
from ftcompare.callbacks import PeakMemory, TrainingMemory
libc = ctypes.CDLL(None)
assert libc.mallopt(-1, 2**31 - 1) and libc.mallopt(-3, 32 * 2**20)  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
def run():
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    chunks = [torch.ones(2 * 2**20) for _ in range(30)]  # 240 MiB in 8 MiB blocks
    memory.sample()
    del chunks  # freed, still resident in the heap
    return memory.above_start_mb()
print(run(), run())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_memory_an_earlier_run_freed_counts_again_for_the_next_run():
    """Without handing freed heap back at reset, a later run in the same process (Hydra's basic launcher,
    joblib workers) fills it without raising the resident size and reports a fraction of its memory."""
    out = subprocess.run([sys.executable, "-c", FREED_THEN_REUSED], capture_output=True, text=True, check=True)
    first, second = map(float, out.stdout.split())
    assert first > 200 and second > 0.9 * first, (first, second)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("full", ["ends in about", "(3 of 6 training steps left at", "3 evaluation batches at"]),
        # frozen: only its first epoch is slow (later ones reuse the features): 3 steps, 1 validation + test
        ("frozen", ["ends in about", "(0 of 3 training steps left at", "2 evaluation batches at", "reuse its work"]),
        # gradual: timed while the head trains alone, a lower bound
        ("gradual", ["ends in at least", "(3 of 6 training steps left at", "later stages train more layers"]),
    ],
)
def test_the_forecast_comes_once_after_the_first_steps_and_counts_the_whole_run(
    compose_cfg, tiny_models, reviews_csv, caplog, strategy, expected
):
    cfg = compose_cfg(f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv))
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=1, callbacks=[Forecast(2)]
    )
    with caplog.at_level(logging.INFO, logger="ftcompare.callbacks.forecast"):
        trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("forecast:")]
    # 2 epochs x 3 steps; 2 validations of 1 batch (the best checkpoint's is reused) + 1 test batch
    assert all(part in line for part in expected) and "debug=limit" not in line, line  # a sliced run already
    assert duration(45) == "45 s" and duration(14 * 60) == "14 min" and duration(137 * 60) == "2 h 17 min"


def test_the_forecast_suggests_a_look_at_a_few_batches_only_to_a_whole_run(
    compose_cfg, tiny_models, reviews_csv, caplog
):
    cfg = compose_cfg("strategy=frozen", *tiny_overrides(tiny_models["bert"], reviews_csv))
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[Forecast(2)])
    with caplog.at_level(logging.INFO, logger="ftcompare.callbacks.forecast"):
        trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("forecast:")]
    assert "of 8 training steps left" in line and "Quicker: debug=limit for a look at a few batches" in line


def _memory_by_category(compose_cfg, tiny_models, reviews_csv, strategy: str) -> dict:
    head_alone = ["strategy.head_only=0.9", "strategy.all_from=0.9"] if strategy == "gradual" else []  # 1st stage
    cfg = compose_cfg(f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv), *head_alone)
    tracked = TrainingMemory(at_step=1)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[tracked])
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    return tracked.record


def test_training_memory_by_category_ranks_the_strategies_and_ignores_job_order(compose_cfg, tiny_models, reviews_csv):
    """Tensor-level peak of one step: frozen < gradual's first stage < LoRA < full, LoRA's optimizer state a
    sliver of full's, and the same figures whichever strategy ran before in the process."""
    order = ["full", "frozen", "lora", "gradual"]
    first = {s: _memory_by_category(compose_cfg, tiny_models, reviews_csv, s) for s in order}
    again = {s: _memory_by_category(compose_cfg, tiny_models, reviews_csv, s) for s in reversed(order)}
    peak = {s: record["at_peak_mib"]["total"] for s, record in first.items()}
    assert peak["frozen"] < peak["gradual"] < peak["lora"] < peak["full"], peak
    full, lora = first["full"]["at_peak_mib"], first["lora"]["at_peak_mib"]
    assert 0 < lora["optimizer_state"] < 0.02 * full["optimizer_state"]
    assert full["gradients"] == pytest.approx(full["parameters"], rel=0.01)  # every weight gets a gradient
    assert full["optimizer_state"] == pytest.approx(2 * full["parameters"], rel=0.01)  # AdamW: two moments
    assert first["frozen"]["parameters_frozen_mib"] > 0 and first["full"]["parameters_frozen_mib"] == 0
    assert all(first[s]["at_peak_mib"] == again[s]["at_peak_mib"] for s in order)


def test_without_memtracker_an_analytic_count_stands_in_and_says_so(compose_cfg, tiny_models, reviews_csv, monkeypatch):
    """Where the backward pass sets the peak (full, LoRA) the count is within 10 % of the tracker's."""
    tracked = {s: _memory_by_category(compose_cfg, tiny_models, reviews_csv, s) for s in ("full", "lora")}
    monkeypatch.setitem(sys.modules, "torch.distributed._tools.mem_tracker", None)  # the private API is gone
    counted = {s: _memory_by_category(compose_cfg, tiny_models, reviews_csv, s) for s in ("full", "lora")}
    for strategy in ("full", "lora"):
        assert counted[strategy]["method"].startswith("analytic") and tracked[strategy]["method"].startswith("torch")
        by, ref = counted[strategy]["at_peak_mib"], tracked[strategy]["at_peak_mib"]
        assert by["optimizer_state"] == ref["optimizer_state"]
        # LoRA's peak may fall in the backward pass just before its adapters' few gradients exist
        assert by["gradients"] == pytest.approx(ref["gradients"], abs=0.01 * ref["total"])
        assert by["total"] == pytest.approx(ref["total"], rel=0.1), (by, ref)


def test_training_memory_is_measured_on_a_full_batch_not_an_epochs_remainder(compose_cfg, tiny_models, reviews_csv):
    """12 reviews in batches of 8, in order: step 1 is the remainder of 4; the tracked step is the next full one."""
    overrides = [*tiny_overrides(tiny_models["bert"], reviews_csv), "data.train_subset=12"]
    overrides.append("data.group_by_length=false")
    cfg = compose_cfg("strategy=lora", *overrides)
    tracked = TrainingMemory(at_step=1)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[tracked])
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    assert trainer.num_training_batches == 2
    assert tracked.record["batch_shape"][0] == 8 and tracked.record["step"] == 2


class BarSeen(L.Callback):
    """What the training bar shows as each batch starts (runs after the progress bar's own hook)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, int | None, int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        bar = trainer.progress_bar_callback.train_progress_bar
        self.seen.append((batch_idx, bar.desc, bar.total, bar.initial))


def test_the_progress_bar_of_an_epoch_resumed_mid_way_has_its_total_and_epoch(tmp_path):
    """Lightning skips on_train_epoch_start on a mid-epoch restart: its own bar shows `Training: 4/?`."""
    steps = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=4, save_top_k=-1)
    quiet_trainer(max_epochs=1, limit_train_batches=6, enable_checkpointing=True, callbacks=[steps]).fit(BoringModel())
    seen = BarSeen()
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=6, enable_progress_bar=True, callbacks=[ProgressBar(), seen]
    )
    trainer.fit(BoringModel(), ckpt_path=tmp_path / "step=4.ckpt")
    assert seen.seen[0] == (4, "Epoch 0: ", 6, 4)  # 4 batches were done before: not counted in this run's rate
    assert seen.seen[2] == (0, "Epoch 1: ", 6, 0)
