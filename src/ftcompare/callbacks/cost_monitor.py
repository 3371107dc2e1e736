"""Per-run cost figures behind the comparison: wall and step time, throughput, peak memory, parameter counts."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import psutil
import torch

_LIBC = ctypes.CDLL(None) if os.name == "posix" else None  # the process's own C library, looked up once


def _release_free_heap() -> None:
    """Hand memory that earlier runs in this process freed back to the OS (glibc keeps it otherwise), so a
    later run's allocations raise the resident size as they would in a fresh process."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


class PeakMemory:
    """Peak memory of this run only: GPU peak allocated, or CPU peak resident set size.

    On Linux the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs, so a run
    after a bigger one in the same process does not inherit its peak; elsewhere RSS is sampled.
    `above_start_mb` is the peak minus the level at `reset`: what the run itself added (gradients,
    optimizer state, activations), free of whatever the process held before.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sampled = self.start = 0
        self.kernel_hwm = sys.platform.startswith("linux")

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return
        _release_free_heap()
        self.sampled = self.start = psutil.Process().memory_info().rss
        if self.kernel_hwm:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.kernel_hwm = False

    def sample(self) -> None:
        if self.device.type != "cuda" and not self.kernel_hwm:
            self.sampled = max(self.sampled, psutil.Process().memory_info().rss)

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.kernel_hwm:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return self.sampled / 2**20

    def above_start_mb(self) -> float:
        return self.peak_mb() - self.start / 2**20


class CostMonitor(L.Callback):
    """Logs wall time, step time, throughput, peak memory and parameter counts per epoch and per run.

    Step time covers forward, backward and optimizer step (data loading excluded); throughput is
    training samples (and non-padding tokens) over that time. `run_summary` gives the run's figures.
    The totals travel in checkpoints, so a resumed run reports the cost of all its training, not
    only of the last attempt (time lost to the interruption itself is not counted).
    """

    def __init__(self) -> None:
        self.restored: dict[str, Any] | None = None

    def _sync(self) -> None:
        if self.memory.device.type == "cuda":
            torch.cuda.synchronize(self.memory.device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.memory = PeakMemory(pl_module.device)
        self.memory.reset()
        self.fit_start = time.perf_counter()
        self.epoch_times: list[float] = []
        self.totals = dict.fromkeys(("step_time", "samples", "tokens", "steps"), 0.0)
        self.earlier = {"fit_time": 0.0, "peak_mb": 0.0, "train_mb": 0.0}  # from attempts before a resume
        self.epoch_index, self.epoch_start = -1, self.fit_start
        self.epoch = dict.fromkeys(self.totals, 0.0)
        if self.restored:
            state, self.restored = self.restored, None
            self.epoch_times, self.totals, self.earlier = state["epoch_times"], state["totals"], state["earlier"]
            self.epoch_index, self.epoch, self.epoch_elapsed = state["epoch_index"], state["epoch"], state["elapsed"]

    def state_dict(self) -> dict[str, Any]:
        if not hasattr(self, "totals"):
            return {}
        now = time.perf_counter()
        earlier = {
            "fit_time": self.earlier["fit_time"] + now - self.fit_start,
            "peak_mb": max(self.earlier["peak_mb"], self.memory.peak_mb()),
            "train_mb": max(self.earlier["train_mb"], self.memory.above_start_mb()),
        }
        finished = self.epoch_index < len(self.epoch_times)  # saved after this epoch's on_train_epoch_end
        return {
            "epoch_times": list(self.epoch_times),
            "totals": dict(self.totals),
            "earlier": earlier,
            "epoch_index": self.epoch_index,
            "epoch": dict.fromkeys(self.totals, 0.0) if finished else dict(self.epoch),
            "elapsed": 0.0 if finished else now - self.epoch_start,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict or None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch_index == trainer.current_epoch:  # resumed in the middle of this epoch: carry on
            self.epoch_start = time.perf_counter() - self.epoch_elapsed
            return
        self.epoch_index, self.epoch_start = trainer.current_epoch, time.perf_counter()
        self.epoch = dict.fromkeys(self.totals, 0.0)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync()
        self.batch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync()
        self.epoch["step_time"] += time.perf_counter() - self.batch_start
        self.epoch["samples"] += len(batch["labels"])
        self.epoch["tokens"] += float(batch["attention_mask"].sum())
        self.epoch["steps"] += 1
        self.memory.sample()

    def _figures(self, step_time: float, samples: float, tokens: float, steps: float) -> dict[str, float]:
        return {
            "perf/step_time_ms": 1000 * step_time / max(steps, 1),
            "perf/train_samples_per_s": samples / step_time if step_time else 0.0,
            "perf/train_tokens_per_s": tokens / step_time if step_time else 0.0,
            "perf/peak_memory_mb": max(self.earlier["peak_mb"], self.memory.peak_mb()),
            "perf/train_memory_mb": max(self.earlier["train_mb"], self.memory.above_start_mb()),
        }

    def _params(self, pl_module: L.LightningModule) -> dict[str, float]:
        trainable, total = pl_module.parameter_counts()
        return {"params/trainable": trainable, "params/total": total, "params/trainable_pct": 100 * trainable / total}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_times.append(time.perf_counter() - self.epoch_start)
        for key in ("samples", "tokens"):  # under DDP: what all processes trained in this epoch's steps
            total = trainer.strategy.reduce(torch.tensor(self.epoch[key], device=pl_module.device), reduce_op="sum")
            self.epoch[key] = float(total)
        for key, value in self.epoch.items():
            self.totals[key] += value
        figures = {"perf/epoch_time_s": self.epoch_times[-1], **self._figures(**self.epoch), **self._params(pl_module)}
        pl_module.log_dict(figures, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        summary = {
            "perf/fit_time_s": self.earlier["fit_time"] + time.perf_counter() - self.fit_start,
            "perf/mean_epoch_time_s": sum(self.epoch_times) / max(len(self.epoch_times), 1),
            **self._figures(**self.totals),
            **self._params(pl_module),
        }
        run_level = {f"run/{k.split('/', 1)[1]}": v for k, v in summary.items()}
        for logger in trainer.loggers:
            logger.log_metrics(run_level, step=trainer.global_step)
        # callback metrics are what ddp_spawn carries back to the main process, where the record is written
        carried = {**summary, "perf/epochs_trained": len(self.epoch_times)}
        trainer.callback_metrics.update(
            {_SUMMARY + k: torch.tensor(float(v), dtype=torch.float64) for k, v in carried.items()}
        )

    @staticmethod
    def run_summary(trainer: L.Trainer) -> dict[str, float]:
        """The figures of the fit that just ended; read them before validate/test reset the trainer's metrics."""
        metrics = trainer.callback_metrics.items()
        return {key.removeprefix(_SUMMARY): float(value) for key, value in metrics if key.startswith(_SUMMARY)}


_SUMMARY = "cost_monitor:"
