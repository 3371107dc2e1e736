"""Gradual unfreezing as a Lightning `BaseFinetuning` callback: which layers train when, at which learning rate."""

from __future__ import annotations

from bisect import bisect_right
from itertools import pairwise
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

from ftcompare.models import anatomy


class GradualUnfreeze(BaseFinetuning):
    """ULMFiT-style unfreezing on a schedule of training steps, so any run length works.

    The head trains alone for the first `head_only` fraction of the steps; then the encoder layers join
    top-down in `groups` groups (the embeddings with the lowest), evenly spaced until `all_from`, after
    which every layer trains. Layer-wise learning-rate decay: the layer d below the head gets
    lr x `layer_lr_decay`**d (the embeddings one deeper than the lowest layer).

    New parameter groups join the running LR schedule (a scheduler built before a group existed
    would otherwise leave that group at a constant LR).
    """

    def __init__(
        self, groups: int = 3, head_only: float = 0.1, all_from: float = 0.5, layer_lr_decay: float = 1.0
    ) -> None:
        super().__init__()
        self.groups, self.head_only, self.all_from, self.layer_lr_decay = groups, head_only, all_from, layer_lr_decay
        self._starts: list[int] | None = None  # this fit's stage_steps
        self._stage: int | None = None  # the stage the optimizer holds

    def layers(self, pl_module: L.LightningModule) -> list[nn.Module]:
        """The encoder layers top-down, then the embeddings: index + 1 is the depth below the head."""
        parts = anatomy(pl_module.model)
        return [*reversed(list(parts.layers)), parts.embeddings]

    def stages(self, pl_module: L.LightningModule) -> list[list[nn.Module]]:
        """The groups in unfreezing order; the last one holds the embeddings too."""
        layers = self.layers(pl_module)
        encoder, count = layers[:-1], min(self.groups, len(layers) - 1)
        bounds = [round(i * len(encoder) / count) for i in range(count + 1)]
        groups = [encoder[a:b] for a, b in pairwise(bounds)]
        groups[-1].append(layers[-1])
        return groups

    def stage_steps(self, pl_module: L.LightningModule, total_steps: int) -> list[int]:
        """The step from which each stage trains: 0 (the head alone), then one per group."""
        count = len(self.stages(pl_module))
        if count == 1:  # one group: everything joins at `all_from`
            return [0, round(self.all_from * total_steps)]
        fractions = [self.head_only + (self.all_from - self.head_only) * i / (count - 1) for i in range(count)]
        return [0, *(round(f * total_steps) for f in fractions)]

    def unfrozen_at(self, pl_module: L.LightningModule, stage: int) -> list[nn.Module]:
        """The layers that train in `stage` (0: none, the head alone)."""
        return [layer for group in self.stages(pl_module)[:stage] for layer in group]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self.layers(pl_module))

    def trainable_at(self, pl_module: L.LightningModule, stage: int) -> None:
        """requires_grad as it is during `stage` (the optimizer is not touched)."""
        self.freeze_before_training(pl_module)
        self.make_trainable(self.unfrozen_at(pl_module, stage))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stages begin at steps, not epochs: see `on_train_batch_start`."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if self._starts is None:
            self._starts = self.stage_steps(pl_module, int(trainer.estimated_stepping_batches))
        stage = bisect_right(self._starts, trainer.global_step) - 1  # the last stage begun by this step
        if stage == self._stage:
            return
        self._stage = stage
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            count = len(optimizer.param_groups)
            self.finetune_function(pl_module, stage, optimizer)
            self._store(pl_module, opt_idx, count, optimizer.param_groups)  # what a resumed run gives back

    def finetune_function(self, pl_module: L.LightningModule, stage: int, optimizer: Optimizer) -> None:
        """Make the stage's layers trainable; those new to the optimizer get their groups at their decayed LR."""
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        unfrozen = self.unfrozen_at(pl_module, stage)
        self.make_trainable(unfrozen)  # again after a resume, where the groups come back but not requires_grad
        depth = {id(layer): d for d, layer in enumerate(self.layers(pl_module), start=1)}
        for layer in unfrozen:
            if all(id(p) in known for p in layer.parameters()):
                continue
            lr = optimizer.defaults["lr"] * self.layer_lr_decay ** depth[id(layer)]
            for group in pl_module.param_groups(layer.named_parameters(), lr=lr):
                group["params"] = [p for p in group["params"] if id(p) not in known]
                optimizer.add_param_group(group)
                self._join_schedule(pl_module.trainer, optimizer, optimizer.param_groups[-1])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """On resume BaseFinetuning gives the optimizer every group back; the freshly built LambdaLR gets a
        multiplier per group too, before Lightning loads its saved state (which has one per group)."""
        super().on_fit_start(trainer, pl_module)
        self._starts = self._stage = None
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
