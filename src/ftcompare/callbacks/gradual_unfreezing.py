"""Gradual unfreezing as a Lightning `BaseFinetuning` callback: which layers train when, at which learning rate."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

from ftcompare.models import anatomy


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

    def unfrozen_at(self, pl_module: L.LightningModule, epoch: int) -> list[nn.Module]:
        """The stages that train at `epoch`."""
        stages = self.stages(pl_module)
        return stages[: min(epoch // self.unfreeze_every, len(stages))]

    def stage_epochs(self, pl_module: L.LightningModule, max_epochs: int) -> list[int]:
        """Epochs at which one more stage joins (0: the head alone)."""
        n_stages = len(self.stages(pl_module))
        return [e for e in range(max_epochs) if e % self.unfreeze_every == 0 and e // self.unfreeze_every <= n_stages]

    def trainable_at(self, pl_module: L.LightningModule, epoch: int) -> None:
        """requires_grad as it is during `epoch` (the optimizer is not touched)."""
        self.freeze_before_training(pl_module)
        for stage in self.unfrozen_at(pl_module, epoch):
            self.make_trainable(stage)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        base_lr = optimizer.defaults["lr"]
        for depth, stage in enumerate(self.unfrozen_at(pl_module, epoch), start=1):
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
