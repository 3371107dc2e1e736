"""Gradual unfreezing (ULMFiT): the head first, then groups of encoder layers top-down on a schedule of steps."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig

from ftcompare.callbacks.gradual_unfreezing import GradualUnfreeze
from ftcompare.errors import ConfigError
from ftcompare.settings import integer_setting
from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import register


@register("gradual")
class GradualUnfreezing(FineTuningStrategy):
    """Head first, then groups of encoder layers top-down, every layer trainable for the last part of training
    (a BaseFinetuning callback); layer-wise learning-rate decay."""

    def __init__(
        self,
        groups: int = 3,
        head_only: float = 0.1,
        all_from: float = 0.5,
        layer_lr_decay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
        self.unfreeze = GradualUnfreeze(groups, head_only, all_from, layer_lr_decay)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        settings = cfg.strategy
        if "groups" in settings:
            integer_setting(cfg, "strategy.groups", "e.g. strategy.groups=3 (the layers join in 3 groups)")
        decay = settings.get("layer_lr_decay", 1.0)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise ConfigError(
                f"strategy.layer_lr_decay={decay!r} is invalid: it must be a number > 0 and <= 1 (a factor per layer "
                "below the head). Fix: e.g. strategy.layer_lr_decay=0.9, or 1.0 for one learning rate"
            )
        head_only, all_from = settings.get("head_only", 0.1), settings.get("all_from", 0.5)
        for key, value in (("head_only", head_only), ("all_from", all_from)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(
                    f"strategy.{key}={value!r} is invalid: it must be a fraction of the training steps, from 0 to 1. "
                    f"Fix: e.g. strategy.{key}={0.1 if key == 'head_only' else 0.5}"
                )
        if all_from < head_only:
            raise ConfigError(
                f"strategy.all_from={all_from} is before strategy.head_only={head_only}: every layer would train "
                "before the first one joins. Fix: all_from >= head_only, e.g. head_only=0.1 all_from=0.5"
            )

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.unfreeze]

    def stage_steps(self, total_steps: int) -> list[int]:
        return self.unfreeze.stage_steps(self, total_steps)

    def enter_stage(self, stage: int) -> None:
        self.unfreeze.trainable_at(self, stage)
