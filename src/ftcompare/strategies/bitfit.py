"""BitFit: only the bias terms and the classification head train."""

from __future__ import annotations

from typing import Any

from ftcompare.models import anatomy
from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import register


@register("bitfit")
class BitFit(FineTuningStrategy):
    """Only the bias terms (attention, feed-forward, LayerNorm) and the classification head train."""

    saves_trainable_only = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
        head = tuple(f"{name}." for name in anatomy(self.model).head)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.endswith(".bias") or name.startswith(head))
