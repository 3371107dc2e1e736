"""Measuring a training loop: wall time at each step end with the batch it consumed, the matmul rate of the
machine, and the model FLOPs of full fine-tuning."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import nn
from transformers import PreTrainedModel, TrainerCallback

from ftcompare.callbacks import PeakMemory
from ftcompare.models import anatomy


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of the fastest of `reps` n x n x n matmuls: the machine's practical ceiling for model
    compute (the best, because on a shared machine the mean moves with the neighbours' load)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops(model: PreTrainedModel, batch: int, length: int) -> float:
    """Forward + backward FLOPs of one full fine-tuning step: 3x the forward's matmuls (encoder
    linear layers 2*tokens*weights, attention scores and mixing 4*batch*length^2*hidden per layer)."""
    layers = anatomy(model).layers
    weights = sum(m.weight.numel() for m in layers.modules() if isinstance(m, nn.Linear))
    hidden = model.config.hidden_size
    forward = 2 * batch * length * weights + 4 * batch * length**2 * hidden * len(layers)
    return 3.0 * forward


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepClock:
    """Wall time at the end of each optimizer step, with the batch each step consumed.

    Batches are queued by the collator and taken off in order at each step end, so a loop that
    fetches one batch ahead (Lightning does) is timed correctly.
    """

    device: torch.device
    pending: list[tuple[int, int, int]] = field(default_factory=list)  # (samples, tokens, padded length)
    steps: list[tuple[float, int, int, int]] = field(default_factory=list)

    def collator(self, collate: Callable[[list], dict]) -> Callable[[list], dict]:
        def timed_collate(features: list) -> dict:
            batch = collate(features)
            mask = batch["attention_mask"]
            self.pending.append((len(mask), int(mask.sum()), mask.shape[1]))
            return batch

        return timed_collate

    def tick(self) -> None:
        sync(self.device)
        self.steps.append((time.perf_counter(), *self.pending.pop(0)))

    def steady(self, warmup: int, end: int | None = None) -> dict[str, float]:
        """Throughput over steps warmup..end (0-based), timed from the end of step warmup-1."""
        window = self.steps[warmup:end]
        if warmup < 1 or not window:
            raise ValueError(f"need at least one warm-up and one timed step, got {len(self.steps)} steps")
        seconds = window[-1][0] - self.steps[warmup - 1][0]
        samples, tokens = sum(s[1] for s in window), sum(s[2] for s in window)
        return {
            "samples_per_s": samples / seconds,
            "tokens_per_s": tokens / seconds,
            "step_ms": 1000 * seconds / len(window),
            "timed_steps": len(window),
        }


class LightningTicks(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock, self.epoch_ends = clock, []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.clock.tick()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_ends.append(len(self.clock.steps))


class TrainerTicks(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.clock.tick()


def memory_from_here(device: torch.device) -> PeakMemory:
    """A peak-memory probe whose `above_start_mb` is what the code after this call added."""
    memory = PeakMemory(device)
    memory.reset()
    return memory


def achieved_flops(model: PreTrainedModel, clock: StepClock, warmup: int) -> dict[str, float]:
    """Model FLOP/s of full fine-tuning over the timed steps, from each batch's padded shape."""
    flops = sum(training_flops(model, samples, length) for _, samples, _, length in clock.steps[warmup:])
    return {"flops_per_s": flops / (clock.steps[-1][0] - clock.steps[warmup - 1][0])}
