"""Frozen backbone: only an MLP head over the backbone's pooled output trains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import AutoModel

from ftcompare.models import PooledClassifier
from ftcompare.settings import number_setting
from ftcompare.strategies.base import FineTuningStrategy, model_inputs
from ftcompare.strategies.feature_cache import FeatureCache, model_identity
from ftcompare.strategies.registry import register


@register("frozen")
class FrozenBackbone(FineTuningStrategy):
    """Backbone frozen in eval mode, run without a graph; only an MLP over the pooled output of its chosen
    layers (`layers`, `combine`) trains.

    With `cache_features` each example's pooled features are computed once (first epoch) and
    reused in every later epoch and validation; `cache_dir` keeps them across runs.
    """

    saves_trainable_only = True
    first_epoch_differs = True

    def __init__(
        self,
        pooling: str = "mean",
        layers: int | Sequence[int] = 4,
        combine: str = "concat",
        head_hidden_dims: tuple[int, ...] = (256,),
        head_dropout: float = 0.1,
        cache_features: bool = True,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        backbone = self.load_pretrained(AutoModel).requires_grad_(False).eval()
        self.model = PooledClassifier(
            backbone,
            len(self.label_names),
            pooling,
            tuple(head_hidden_dims),
            head_dropout,
            layers,
            combine,
        )
        self.cache_features, self.cache_dir = cache_features, cache_dir
        self.first_epoch_differs = cache_features  # without the cache every epoch runs the backbone
        self.cache: FeatureCache | None = None

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        if cfg.strategy.get("head_dropout", 0) != 0:
            number_setting(cfg, "strategy.head_dropout", "e.g. strategy.head_dropout=0.1", high=1.0)

    def setup(self, stage: str) -> None:
        """The cache is made here, once the precision (part of its identity) is known."""
        if self.cache_features and self.cache is None:
            model = model_identity(self.model_cfg["name_or_path"])
            identity = [model, self.model.pooling, list(self.model.layers), str(self.trainer.precision)]
            self.cache = FeatureCache(self.cache_dir, identity)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            if self.cache is None:
                return self.model.pool(**model_inputs(batch))
            return self.cache.lookup(batch, lambda rows: self.model.pool(**model_inputs(rows)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.classify(self.features(batch))

    def on_train_end(self) -> None:
        if self.cache is not None:
            self.cache.save()

    def on_test_end(self) -> None:
        """The test split's features too: the next run of a sweep (seeds, lr, epochs) finds them."""
        self.on_train_end()

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Keep the backbone in eval mode (no dropout) whatever Lightning asks of the module."""
        super().train(mode)
        self.model.backbone.eval()
        return self
