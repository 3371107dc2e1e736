"""Training memory by category (parameters, gradients, optimizer state, activations, temporaries), measured at
the tensor level on one training step, the same way on every device: what the comparison's memory column
rests on, where process memory (RSS) hides the differences between strategies."""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import Any

import lightning as L
import torch

from ftcompare.memory.tracking import CountedStep, TrackedStep, at_peak_mib, parameter_mib, track_step

log = logging.getLogger(__name__)


class TrainingMemory(L.Callback):
    """Tracks one training step of each stage of the strategy's trainable set (one for most strategies; gradual
    unfreezing's grow), with PyTorch's MemTracker (`memory/tracking.py`): the step `at_step` steps into the stage
    (the second by default, when the optimizer state exists), or the first after it that is a full batch (not an
    epoch's remainder) as long as the first tracked one (length-grouped batches vary). `self.record` holds the
    largest step's peak by category (MiB) and every stage's total, for metrics.json and TensorBoard (`memory/*`).
    Each tracked step costs one step's tracking overhead, once per stage."""

    def __init__(self, at_step: int = 1) -> None:
        self.at_step = at_step
        self.record: dict[str, Any] | None = None
        self.stages: list[dict[str, Any]] = []
        self._step: TrackedStep | CountedStep | None = None
        self._starts: list[int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record, "stages": self.stages}  # a resumed run keeps the stages it tracked

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record = state_dict.get("record")
        self.stages = [s for s in state_dict.get("stages", []) if "stage" in s]  # older runs tracked by epoch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if self._step is not None:
            return
        if self._starts is None:
            total = int(trainer.estimated_stepping_batches)
            self._starts = getattr(pl_module, "stage_steps", lambda _: [0])(total)
        step = trainer.global_step
        stage = bisect_right(self._starts, step) - 1  # the last stage begun by this step
        if stage in {s["stage"] for s in self.stages} or step < self._starts[stage] + self.at_step:
            return
        if self.stages and batch["input_ids"].shape[-1] < self.stages[0]["batch_shape"][-1]:
            return  # a shorter batch than the first stage's would understate this stage's activations
        if _remainder(trainer, batch):
            return  # an epoch's last, smaller batch would understate the activations of every step
        self._step, self._batch, self._stage = track_step(pl_module, trainer.optimizers), batch, stage

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._step is not None:
            self._step.optimizer_phase()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._step is None:
            return
        step, self._step = self._step, None
        stage = {
            "stage": self._stage,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step - 1,
            "batch_shape": list(self._batch["input_ids"].shape),
            **parameter_mib(pl_module),
            "at_peak_mib": at_peak_mib(step.stop()),
        }
        self.stages.append(stage)
        largest = max(self.stages, key=lambda s: s["at_peak_mib"]["total"])
        self.record = {
            "method": step.method,
            "device": str(pl_module.device),
            "precision": str(trainer.precision),
            **largest,
        }
        if len(self.stages) > 1:  # gradual unfreezing: what each stage held
            self.record["stages"] = [
                {k: s[k] for k in ("stage", "step", "parameters_trainable_mib")}
                | {"total_mib": s["at_peak_mib"]["total"]}
                for s in self.stages
            ]
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"memory/{name}_mib": value for name, value in stage["at_peak_mib"].items()}, step=stage["step"]
            )
        log.info(
            "training memory at its peak (tensors, step %d, stage %d): %s",
            stage["step"],
            stage["stage"],
            _line(stage["at_peak_mib"]),
        )


def _remainder(trainer: L.Trainer, batch: Any) -> bool:
    """A batch smaller than the loader's batch size, in an epoch that also has full ones."""
    loader = trainer.train_dataloader
    size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None) or getattr(loader, "batch_size", None)
    return bool(size) and len(batch["input_ids"]) < size and trainer.num_training_batches > 1


def _line(at_peak: dict[str, float]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in at_peak.items() if value) + " MiB"
