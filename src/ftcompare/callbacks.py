"""Lightning callbacks: the cost monitor behind the comparison, and gradual unfreezing."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import psutil
import torch
from lightning.pytorch.callbacks import BaseFinetuning, ModelCheckpoint
from torch import nn
from torch.optim import Optimizer

from ftcompare.models import anatomy

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


class GracefulInterrupt(L.Callback):
    """Ctrl-C once: the current step finishes, a checkpoint is saved, and the run stops with `Interrupted`
    (resume it with the same command and resume=true). Ctrl-C twice: it stops at once, and a resume
    starts from the last epoch's checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise Interrupted(
                "stopped at once by a second Ctrl-C. Fix: run the same command with resume=true to continue "
                "from the last epoch's checkpoint"
            )
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._request)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.requested:
            return
        path = last_checkpoint(trainer) or Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        raise Interrupted(
            f"interrupted in epoch {trainer.current_epoch} after step {trainer.global_step}; checkpoint saved to "
            f"{path}. Fix: run the same command with resume=true to continue"
        )

    def _restore_handler(self, *args: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    on_fit_end = on_exception = _restore_handler


def last_checkpoint(trainer: L.Trainer) -> Path | None:
    """Where the newest-epoch checkpoint goes (the ModelCheckpoint without a monitor): what a run resumes from."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
    return None


class Interrupted(Exception):
    """The user stopped the run; a checkpoint to resume from was saved."""


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
            self.make_trainable(stage)  # again after a resume, where the groups come back but not requires_grad
            if all(id(p) in known for p in stage.parameters()):
                continue
            for group in pl_module.param_groups(stage.named_parameters(), lr=base_lr / self.lr_decay**depth):
                group["params"] = [p for p in group["params"] if id(p) not in known]
                optimizer.add_param_group(group)
                self._join_schedule(pl_module.trainer, optimizer, optimizer.param_groups[-1])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """On resume BaseFinetuning gives the optimizer every group back; the freshly built LambdaLR gets a
        multiplier per group too, before Lightning loads its saved state (which has one per group)."""
        super().on_fit_start(trainer, pl_module)
        for config in trainer.lr_scheduler_configs:
            lambdas = getattr(config.scheduler, "lr_lambdas", None)
            if lambdas is not None:
                lambdas += [lambdas[0]] * (len(config.scheduler.optimizer.param_groups) - len(lambdas))

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
