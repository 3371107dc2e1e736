"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import Any

from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import register


@register("full")
class FullFineTuning(FineTuningStrategy):
    """Every parameter trains."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
