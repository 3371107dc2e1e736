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


class _TrackedStep:
    """PyTorch's MemTracker over one step, with the two adjustments in `TrainingMemory`'s docstring."""

    method = METHOD

    def __init__(self, module: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        from torch.distributed._tools.mem_tracker import MemTracker  # private API: TrainingMemory guards it

        self.device = next(module.parameters()).device
        self.tracker = MemTracker()
        self.tracker.track_external(module, *optimizers)
        for param in module.parameters():
            if not param.requires_grad:
                self.tracker._param_to_grad_hook_handles[param] = (_NoHook(), _NoHook())
        self.tracker.__enter__()
        self.tracker._optimizer_hook_handles[0].remove()  # the stock pre-step hook

    def optimizer_phase(self) -> None:
        self.tracker._in_opt = True

    def stop(self) -> dict[str, int]:
        self.tracker.__exit__(None, None, None)
        return self.tracker.get_tracker_snapshot("peak").get(self.device, {})


class _CountedStep:
    """Where MemTracker cannot be had: parameters, gradients and optimizer state counted from the module and
    the optimizer, activations as the unique storages autograd saves for the backward pass. Close to the
    tracker where the backward pass sets the peak (full, LoRA); it misses tensors that live only in the
    forward pass, most of what a frozen backbone or gradual's first stage hold."""

    method = "analytic: parameter, gradient and optimizer-state bytes + storages saved for backward"

    def __init__(self, module: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        self.module, self.optimizers = module, optimizers
        self.own = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self.saved: dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self.hooks.__enter__()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.own:
            self.saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def optimizer_phase(self) -> None:
        self.hooks.__exit__(None, None, None)
        self.gradients = sum(_bytes(p.grad) for p in self.module.parameters() if p.grad is not None)

    def stop(self) -> dict[str, int]:
        state = [t for o in self.optimizers for s in o.state.values() for t in s.values() if torch.is_tensor(t)]
        counted = {
            "Parameter": sum(_bytes(p) for p in self.module.parameters()),
            "Buffer": sum(_bytes(b) for b in self.module.buffers()),
            "Gradient": self.gradients,
            "Optstate": sum(_bytes(t) for t in state),
            "Activation": sum(self.saved.values()),
        }
        return {**counted, "Total": sum(counted.values())}


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class TrainingMemory(L.Callback):
    """Tracks training step `at_step` (0-based; the second step by default, when the optimizer state exists)
    with PyTorch's MemTracker and keeps the peak by category in `self.record` (MiB), for metrics.json and
    TensorBoard (`memory/*`). It costs that one step's tracking overhead, once per run.

    Two adjustments to the stock tracker: frozen parameters get no gradient hook (it would fail on them), and
    the optimizer phase starts at `on_before_optimizer_step`, because Lightning runs forward and backward
    inside `optimizer.step(closure)`, where the stock tracker would file the activations as optimizer state.
    MemTracker is a private API: where it cannot be imported, an analytic count stands in, named in `method`."""

    def __init__(self, at_step: int = 1) -> None:
        self.at_step = at_step
        self.record: dict[str, Any] | None = None
        self._step: _TrackedStep | _CountedStep | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record}  # a resumed run that is past the tracked step keeps its figures

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record = state_dict.get("record")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step != self.at_step or self.record is not None or self._step is not None:
            return
        try:
            self._step = _TrackedStep(pl_module, trainer.optimizers)
        except ImportError:
            log.warning("torch's MemTracker is not available here: training memory is counted analytically")
            self._step = _CountedStep(pl_module, trainer.optimizers)
        self._batch = batch

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
        peak = step.stop()
        trainable = sum(_bytes(p) for p in pl_module.parameters() if p.requires_grad)
        total = sum(_bytes(p) for p in pl_module.parameters())
        self.record = {
            "method": step.method,
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
