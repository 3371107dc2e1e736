"""The cost monitor's memory figure is per run: a small run after a big one reports the small peak."""

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
