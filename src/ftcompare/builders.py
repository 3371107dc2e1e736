"""Everything a run needs, built from its composed config with `hydra.utils.instantiate`."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ftcompare.data import TextClassificationDataModule
from ftcompare.dropout import use_fast_dropout
from ftcompare.errors import ConfigError, first_line
from ftcompare.strategies import FineTuningStrategy


def instantiate_unwrapped(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, letting our own ConfigError through unwrapped (one clear line)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


def build_datamodule(cfg: DictConfig) -> TextClassificationDataModule:
    return instantiate_unwrapped(cfg.data, _convert_="all")


def build_module(cfg: DictConfig) -> FineTuningStrategy:
    """The strategy's LightningModule with the shared model, labels, optimizer and schedule; with
    `model.fast_dropout`, every dropout of it (the adapters' included) draws the cheaper mask of dropout.py."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    fast_dropout = model.pop("fast_dropout", False)  # a property of the run, not of the weights or checkpoints
    module = instantiate_unwrapped(
        cfg.strategy,
        _convert_="all",  # plain containers, so checkpoints load with weights_only=True
        model=model,
        label_names=list(cfg.data.label_names),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    if fast_dropout:
        use_fast_dropout(module)
    return module


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """The configured Trainer with the configured callbacks and loggers."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as err:  # Lightning's refusal, not Hydra's wrapper around it
        cause = err.__cause__
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise
        raise ConfigError(
            f"the trainer settings cannot work here: {first_line(cause)} Fix: change the trainer.* override it names "
            "(conf/trainer/ lists the options)"
        ) from err
