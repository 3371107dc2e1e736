"""The cost monitor's memory figures are per run: a small run after a big one reports the small peak,
and the training memory leaves out what the process held before the run."""

from __future__ import annotations

import torch

from ftcompare.callbacks import PeakMemory


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
