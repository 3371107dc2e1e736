"""The frozen strategy's feature cache: the backbone runs once per example, the cached features are
the ones it would compute, and the on-disk copy is only reused for the same model, pooling, layers and data;
features of several layers, concatenated or mixed."""

from __future__ import annotations

from itertools import pairwise

import lightning as L
import pytest
import torch
from helpers import quiet_trainer, tiny_overrides
from hydra.utils import instantiate

from ftcompare.builders import build_module
from ftcompare.strategies.feature_cache import FeatureCache


class BackboneCalls(L.Callback):
    """Examples the backbone ran on, per training epoch."""

    def __init__(self, module) -> None:
        self.per_epoch: list[int] = []
        module.model.backbone.register_forward_hook(self.count)

    def count(self, backbone, args, kwargs_or_output, *rest) -> None:
        if self.per_epoch:
            self.per_epoch[-1] += 1

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.per_epoch.append(0)


def fit(cfg, module, epochs: int, callbacks=()) -> L.Trainer:
    datamodule = instantiate(cfg.data, _convert_="all")
    trainer = quiet_trainer(max_epochs=epochs, limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(module, datamodule=datamodule)
    return trainer


@pytest.fixture
def frozen(compose_cfg, tiny_models, reviews_csv):
    def _make(*extra: str):
        overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if "limit_train" not in o]
        cfg = compose_cfg("strategy=frozen", *overrides, *extra)
        torch.manual_seed(0)
        return cfg, build_module(cfg)

    return _make


def test_backbone_runs_once_per_example_and_the_head_keeps_training(frozen):
    cfg, module = frozen()
    assert module.model.layers == (0, 1, 2)  # the default, every hidden state: the embeddings and both layers
    calls = BackboneCalls(module)
    head_after_epoch = []

    class HeadSnapshot(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            head_after_epoch.append([p.detach().clone() for p in pl_module.model.head.parameters()])

    fit(cfg, module, epochs=3, callbacks=[calls, HeadSnapshot()])
    assert calls.per_epoch[0] > 0 and calls.per_epoch[1:] == [0, 0]
    assert len(module.cache) == cfg.data.train_size
    assert module.cache.hits == 2 * cfg.data.train_size
    for earlier, later in pairwise(head_after_epoch):
        assert not all(torch.equal(a, b) for a, b in zip(earlier, later, strict=True)), (
            "the head must train on cached features"
        )


def test_cached_features_equal_the_backbone_output(frozen):
    cfg, module = frozen()
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    module.cache = FeatureCache()
    batch = next(iter(datamodule.val_dataloader()))
    first = module.features(batch)  # computed
    again = module.features(batch)  # from the cache
    module.cache = None
    direct = module.features(batch)
    assert torch.equal(first, again) and torch.allclose(first, direct, atol=1e-6)
    # a batch mixing seen and unseen examples, in another order, gets each example's own row
    module.cache = FeatureCache()
    module.features({k: v[:4] for k, v in batch.items()})
    mixed = {k: torch.cat([v[4:7], v[:4].flip(0)]) for k, v in batch.items()}
    expected = torch.cat([direct[4:7], direct[:4].flip(0)])
    assert torch.allclose(module.features(mixed), expected, atol=1e-5)
    assert module.cache.misses == 4 + 3


def test_disk_cache_is_reused_for_the_same_setup_only(frozen, tmp_path):
    cache_dir = f"strategy.cache_dir={tmp_path / 'features'}"
    cfg, module = frozen(cache_dir)
    fit(cfg, module, epochs=1)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1

    cfg, again = frozen(cache_dir)
    calls = BackboneCalls(again)
    fit(cfg, again, epochs=1, callbacks=[calls])
    assert calls.per_epoch == [0] and again.cache.misses == 0

    cfg, longer = frozen(cache_dir, "data.max_length=32")  # other tokens: new keys in the same file
    fit(cfg, longer, epochs=1)
    assert longer.cache.misses > 0
    cfg, cls = frozen(cache_dir, "strategy.pooling=cls")  # other features: another file
    fit(cfg, cls, epochs=1)
    assert cls.cache.misses == cfg.data.train_size
    cfg, layers = frozen(cache_dir, "strategy.layers=[-1]")  # other layers: another file
    fit(cfg, layers, epochs=1)
    assert layers.cache.misses == cfg.data.train_size
    assert len(list((tmp_path / "features").glob("*.pt"))) == 3


@pytest.mark.parametrize("combine", ["concat", "mix"])
def test_features_of_several_layers_are_each_layers_mean_and_the_head_combines_them(frozen, combine):
    """layers [-1, 0]: the last layer's and the embeddings' mean-pooled output, in that order; the head reads
    both (concat: twice the width; mix: a learned softmax weight per layer, trained)."""
    cfg, module = frozen("strategy.layers=[-1,0]", f"strategy.combine={combine}")
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    features = module.features(batch)
    hidden = module.model.backbone(**inputs, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).float()
    for i, state in enumerate((hidden[-1], hidden[0])):
        assert torch.allclose(features[:, i], (state * mask).sum(1) / mask.sum(1), atol=1e-5)
    width = module.model.backbone.config.hidden_size
    first = next(m for m in module.model.head if isinstance(m, torch.nn.Linear))
    assert first.in_features == (2 * width if combine == "concat" else width)
    if combine == "mix":
        mix = module.model.combine
        before = mix.weights.detach().clone()
        fit(cfg, module, epochs=1)
        assert not torch.equal(mix.weights.detach(), before), "the layer weights must train"
