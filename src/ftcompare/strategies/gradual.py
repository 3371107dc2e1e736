"""Gradual unfreezing (ULMFiT): the head first, then encoder layers top-down on a schedule."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from ftcompare.callbacks.gradual_unfreezing import GradualUnfreeze
from ftcompare.errors import ConfigError
from ftcompare.settings import integer_setting, number_setting
from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import register


@register("gradual")
class GradualUnfreezing(FineTuningStrategy):
    """Head first, then encoder layers top-down every `unfreeze_every` epochs (a BaseFinetuning callback)."""

    def __init__(self, unfreeze_every: int = 1, lr_decay: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
        self.unfreeze = GradualUnfreeze(unfreeze_every, lr_decay)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        if "lr_decay" in cfg.strategy:
            number_setting(cfg, "strategy.lr_decay", "e.g. strategy.lr_decay=2.6, or 1.0 for one learning rate")
        if "unfreeze_every" not in cfg.strategy:
            return
        every = integer_setting(cfg, "strategy.unfreeze_every", "e.g. strategy.unfreeze_every=1")
        epochs = OmegaConf.select(cfg, "trainer.max_epochs")
        if epochs is not None and every >= epochs:
            raise ConfigError(
                f"strategy.unfreeze_every={every} with trainer.max_epochs={epochs} never unfreezes an encoder layer "
                f"(the first would be at epoch {every}, the last epoch is {epochs - 1}). "
                f"Fix: strategy.unfreeze_every={max(epochs - 1, 1)} or trainer.max_epochs={every + 1}"
            )

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.unfreeze]

    def stage_epochs(self, max_epochs: int) -> list[int]:
        return self.unfreeze.stage_epochs(self, max_epochs)

    def enter_stage(self, epoch: int) -> None:
        self.unfreeze.trainable_at(self, epoch)
