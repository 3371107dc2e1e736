"""Training memory by category (parameters, gradients, optimizer state, activations), tracked at the tensor level
over one training step: the same measurement on every device, and under fake tensors for the estimate."""

from __future__ import annotations

import logging

import torch
from torch import nn

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


class _ByIdentity(dict):
    """ModTracker's module names keyed by identity: torchmetrics' metrics hash by their state and compare with
    `==` into a new metric, which its WeakKeyDictionary cannot follow (a KeyError once the state changed)."""

    def __contains__(self, module: object) -> bool:
        return super().__contains__(id(module))

    def __getitem__(self, module: object) -> str:
        return super().__getitem__(id(module))

    def __setitem__(self, module: object, name: str) -> None:
        super().__setitem__(id(module), name)

    def get(self, module: object, default: str | None = None) -> str | None:
        return super().get(id(module), default)

    def add(self, module: object) -> None:  # as the set of modules seen
        self[module] = ""


class TrackedStep:
    """PyTorch's MemTracker over one step: `optimizer_phase()` when the backward pass is done, `stop()` after
    the optimizer step. Two adjustments to the stock tracker: frozen parameters get no gradient hook (it would
    fail on them), and the optimizer phase is marked by the caller, because Lightning runs forward and backward
    inside `optimizer.step(closure)`, where the stock tracker would file the activations as optimizer state."""

    method = METHOD

    def __init__(self, module: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        from torch.distributed._tools.mem_tracker import MemTracker  # private API: callers fall back to CountedStep

        self.device = next(module.parameters()).device
        self.tracker = MemTracker()
        modules = self.tracker._mod_tracker
        modules._known_modules, modules._seen_modules = _ByIdentity(), _ByIdentity()
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


class CountedStep:
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
        self.gradients = sum(nbytes(p.grad) for p in self.module.parameters() if p.grad is not None)

    def stop(self) -> dict[str, int]:
        state = [t for o in self.optimizers for s in o.state.values() for t in s.values() if torch.is_tensor(t)]
        counted = {
            "Parameter": sum(nbytes(p) for p in self.module.parameters()),
            "Buffer": sum(nbytes(b) for b in self.module.buffers()),
            "Gradient": self.gradients,
            "Optstate": sum(nbytes(t) for t in state),
            "Activation": sum(self.saved.values()),
        }
        return {**counted, "Total": sum(counted.values())}


def nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def track_step(module: nn.Module, optimizers: list[torch.optim.Optimizer]) -> TrackedStep | CountedStep:
    """Start tracking a step: PyTorch's MemTracker, or the analytic count where that private API is missing."""
    try:
        return TrackedStep(module, optimizers)
    except ImportError:
        log.warning("torch's MemTracker is not available here: training memory is counted analytically")
        return CountedStep(module, optimizers)


def at_peak_mib(peak: dict, categories: dict[str, str] = CATEGORIES) -> dict[str, float]:
    """A tracker's peak snapshot (bytes by its category) as MiB by the names on record."""
    return {name: round(peak.get(key, 0) / MIB, 2) for key, name in categories.items()}


def parameter_mib(module: nn.Module) -> dict[str, float]:
    """Parameter bytes, trainable and frozen, in MiB."""
    params = list(module.parameters())
    trainable = sum(nbytes(p) for p in params if p.requires_grad)
    total = sum(nbytes(p) for p in params)
    return {
        "parameters_trainable_mib": round(trainable / MIB, 2),
        "parameters_frozen_mib": round((total - trainable) / MIB, 2),
    }
