"""Lightning callbacks: the cost monitor behind the comparison, and gradual unfreezing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import psutil
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

from ftcompare.models import anatomy


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
    training samples (and non-padding tokens) over that time. `summary` holds the run's figures.
    """

    def __init__(self) -> None:
        self.summary: dict[str, float] = {}

    def _sync(self) -> None:
        if self.memory.device.type == "cuda":
            torch.cuda.synchronize(self.memory.device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.memory = PeakMemory(pl_module.device)
        self.memory.reset()
        self.fit_start = time.perf_counter()
        self.epoch_times: list[float] = []
        self.step_time = self.samples = self.tokens = self.steps = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start = time.perf_counter()
        self.epoch = {"step_time": 0.0, "samples": 0.0, "tokens": 0.0, "steps": 0.0}

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
            "perf/peak_memory_mb": self.memory.peak_mb(),
            "perf/train_memory_mb": self.memory.above_start_mb(),
        }

    def _params(self, pl_module: L.LightningModule) -> dict[str, float]:
        trainable, total = pl_module.parameter_counts()
        return {"params/trainable": trainable, "params/total": total, "params/trainable_pct": 100 * trainable / total}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        e = self.epoch
        self.epoch_times.append(time.perf_counter() - self.epoch_start)
        self.step_time, self.samples = self.step_time + e["step_time"], self.samples + e["samples"]
        self.tokens, self.steps = self.tokens + e["tokens"], self.steps + e["steps"]
        figures = {"perf/epoch_time_s": self.epoch_times[-1], **self._figures(**e), **self._params(pl_module)}
        pl_module.log_dict(figures, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.summary = {
            "perf/fit_time_s": time.perf_counter() - self.fit_start,
            "perf/mean_epoch_time_s": sum(self.epoch_times) / max(len(self.epoch_times), 1),
            **self._figures(self.step_time, self.samples, self.tokens, self.steps),
            **self._params(pl_module),
        }
        run_level = {f"run/{k.split('/', 1)[1]}": v for k, v in self.summary.items()}
        for logger in trainer.loggers:
            logger.log_metrics(run_level, step=trainer.global_step)


class GradualUnfreeze(BaseFinetuning):
    """ULMFiT-style unfreezing: head only at first, then one more encoder layer from the top every
    `unfreeze_every` epochs, embeddings last; layer at depth d gets lr / lr_decay**d.

    New parameter groups join the running LR schedule (a scheduler built before a group existed
    would otherwise leave that group at a constant LR).
    """

    def __init__(self, unfreeze_every: int = 1, lr_decay: float = 1.0) -> None:
        super().__init__()
        self.unfreeze_every, self.lr_decay = unfreeze_every, lr_decay

    @staticmethod
    def stages(pl_module: L.LightningModule) -> list[nn.Module]:
        """Unfreezing order: encoder layers top-down, then the embeddings."""
        parts = anatomy(pl_module.model)
        return [*reversed(list(parts.layers)), parts.embeddings]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self.stages(pl_module))

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        base_lr = optimizer.defaults["lr"]
        stages = self.stages(pl_module)
        for depth, stage in enumerate(stages[: min(epoch // self.unfreeze_every, len(stages))], start=1):
            if all(id(p) in known for p in stage.parameters()):
                continue
            self.make_trainable(stage)
            for group in pl_module.param_groups(stage.named_parameters(), lr=base_lr / self.lr_decay**depth):
                group["params"] = [p for p in group["params"] if id(p) not in known]
                optimizer.add_param_group(group)
                self._join_schedule(pl_module.trainer, optimizer, optimizer.param_groups[-1])

    @staticmethod
    def _join_schedule(trainer: L.Trainer, optimizer: Optimizer, group: dict[str, Any]) -> None:
        group["initial_lr"] = group["lr"]
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if scheduler.optimizer is not optimizer:
                continue
            scheduler.base_lrs.append(group["initial_lr"])
            if hasattr(scheduler, "lr_lambdas"):  # LambdaLR: same multiplier as the first group
                scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
                group["lr"] = group["initial_lr"] * scheduler.lr_lambdas[0](scheduler.last_epoch)
