"""Training memory by category (parameters, gradients, optimizer state, activations, temporaries), measured at
the tensor level on one training step, the same way on every device: what the comparison's memory column
rests on, where process memory (RSS) hides the differences between strategies."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)
MIB = 2**20
METHOD = "torch MemTracker: every live tensor's storage, by category, peak over one training step"
# MemTracker's categories -> the names on record
CATEGORIES = {
    "Parameter": "parameters",
    "Buffer": "buffers",
    "Gradient": "gradients",
    "Optstate": "optimizer_state",
    "Activation": "activations",
    "Temp": "temporaries",
    "Other": "other",
    "Total": "total",
}


class _NoHook:
    """Stands in for a gradient hook on a frozen parameter (which cannot take one)."""

    def remove(self) -> None:
        pass


class TrainingMemory(L.Callback):
    """Tracks training step `at_step` (0-based; the second step by default, when the optimizer state exists)
    with PyTorch's MemTracker and keeps the peak by category in `self.record` (MiB), for metrics.json and
    TensorBoard (`memory/*`). It costs that one step's tracking overhead, once per run.

    Two adjustments to the stock tracker: frozen parameters get no gradient hook (it would fail on them), and
    the optimizer phase starts at `on_before_optimizer_step`, because Lightning runs forward and backward
    inside `optimizer.step(closure)`, where the stock tracker would file the activations as optimizer state."""

    def __init__(self, at_step: int = 1) -> None:
        self.at_step = at_step
        self.record: dict[str, Any] | None = None
        self._tracker: Any = None

    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record}  # a resumed run that is past the tracked step keeps its figures

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record = state_dict.get("record")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step != self.at_step or self.record is not None or self._tracker is not None:
            return
        from torch.distributed._tools.mem_tracker import MemTracker

        tracker = MemTracker()
        tracker.track_external(pl_module, *trainer.optimizers)
        for param in pl_module.parameters():
            if not param.requires_grad:
                tracker._param_to_grad_hook_handles[param] = (_NoHook(), _NoHook())
        tracker.__enter__()
        tracker._optimizer_hook_handles[0].remove()  # the stock pre-step hook: see the class docstring
        self._tracker, self._batch = tracker, batch

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._tracker is not None:
            self._tracker._in_opt = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._tracker is None:
            return
        tracker, self._tracker = self._tracker, None
        tracker.__exit__(None, None, None)
        peak = tracker.get_tracker_snapshot("peak").get(pl_module.device, {})
        trainable = sum(p.numel() * p.element_size() for p in pl_module.parameters() if p.requires_grad)
        total = sum(p.numel() * p.element_size() for p in pl_module.parameters())
        self.record = {
            "method": METHOD,
            "device": str(pl_module.device),
            "precision": str(trainer.precision),
            "step": self.at_step,
            "batch_shape": list(self._batch["input_ids"].shape),
            "parameters_trainable_mib": round(trainable / MIB, 2),
            "parameters_frozen_mib": round((total - trainable) / MIB, 2),
            "at_peak_mib": {name: round(peak.get(key, 0) / MIB, 2) for key, name in CATEGORIES.items()},
        }
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"memory/{name}_mib": value for name, value in self.record["at_peak_mib"].items()},
                step=trainer.global_step,
            )
        log.info("training memory at its peak (tensors, one step): %s", _line(self.record["at_peak_mib"]))


def _line(at_peak: dict[str, float]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in at_peak.items() if value) + " MiB"
