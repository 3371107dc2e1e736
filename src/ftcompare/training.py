"""Build everything from the Hydra config, train, evaluate the best checkpoint, write metrics.json."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ftcompare import config
from ftcompare.callbacks import CostMonitor
from ftcompare.data import TextClassificationDataModule
from ftcompare.reporting import summary_line, write_json
from ftcompare.strategies import FineTuningStrategy

log = logging.getLogger(__name__)
HPARAM_COSTS = (
    *("perf/fit_time_s", "perf/train_samples_per_s", "perf/peak_memory_mb", "perf/train_memory_mb"),
    "params/trainable",
)


def _instantiate(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, letting our own ConfigError through unwrapped (one clear line)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, config.ConfigError):
            raise err.__cause__ from None
        raise


def build_module(cfg: DictConfig) -> FineTuningStrategy:
    """The strategy's LightningModule with the shared model, labels, optimizer and schedule."""
    return _instantiate(
        cfg.strategy,
        _convert_="all",  # plain containers, so checkpoints load with weights_only=True
        model=OmegaConf.to_container(cfg.model, resolve=True),
        label_names=list(cfg.data.label_names),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def log_hparams_with_results(trainer: L.Trainer, record: dict[str, Any]) -> None:
    """Hyper-parameters next to the final metrics, so TensorBoard's HParams tab compares a sweep's runs."""
    hparams = record["hparams"]
    params = {
        "strategy": record["strategy"],
        "model": record["model"],
        "seed": record["seed"],
        **{k: v for k, v in hparams.items() if k != "strategy"},
        **{f"strategy/{k}": v for k, v in hparams["strategy"].items() if k != "_target_"},  # lora_r, lr_decay, ...
    }
    metrics = {
        "hparams/val_acc": record["val"]["val/acc"],
        "hparams/test_acc": record["test"]["test/acc"],
        "hparams/test_f1": record["test"]["test/f1"],
        **{f"hparams/{k.split('/')[-1]}": v for k, v in record["cost"].items() if k in HPARAM_COSTS and v is not None},
    }
    for logger in trainer.loggers:
        logger.log_hyperparams(params, metrics=metrics)


PACKAGES = ("torch", "lightning", "transformers", "datasets", "peft", "torchmetrics", "hydra-core", "omegaconf")


def provenance(datamodule: TextClassificationDataModule) -> dict[str, Any]:
    """What the run ran on, so two results can be checked for comparability (the resolved config is
    in `.hydra/config.yaml`)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit or None,
        "split_fingerprints": datamodule.fingerprints,
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one strategy, evaluate its best checkpoint on val and test, write `metrics.json`."""
    config.validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule: TextClassificationDataModule = _instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")  # fail on bad data before the model is loaded
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(module, datamodule=datamodule)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]

    cost = next((c.summary for c in trainer.callbacks if isinstance(c, CostMonitor)), {})
    record = {
        "strategy": module.name,
        "model": cfg.model.name_or_path,
        "hparams": {
            "lr": cfg.optimizer.lr,
            "batch_size": cfg.data.batch_size,
            "max_epochs": cfg.trainer.max_epochs,
            "max_length": cfg.data.max_length,
            "precision": str(trainer.precision),
            "strategy": OmegaConf.to_container(cfg.strategy, resolve=True),
        },
        "seed": cfg.seed,
        "data": {k: cfg.data[k] for k in ("train_size", "val_size", "test_size", "split_seed")},
        "epochs_run": trainer.current_epoch,
        "device": str(module.device),
        "val": {k: float(v) for k, v in val.items()},
        "test": {k: float(v) for k, v in test.items()},
        "cost": {**cost, "checkpoint_size_mb": Path(best).stat().st_size / 2**20 if best else None},
        "checkpoint": best,
        "provenance": provenance(datamodule),
    }
    write_json(output_dir / "metrics.json", record)
    log_hparams_with_results(trainer, record)
    log.info(summary_line(record))
    log.info("metrics written to %s", output_dir / "metrics.json")
    return record
