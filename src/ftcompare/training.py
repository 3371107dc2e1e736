"""Build everything from the Hydra config, train, evaluate the best checkpoint, write metrics.json."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ftcompare import config
from ftcompare.callbacks import CostMonitor, Interrupted, last_checkpoint
from ftcompare.data import TextClassificationDataModule
from ftcompare.models import check_backbone
from ftcompare.reporting import summary_line, write_json
from ftcompare.strategies import FineTuningStrategy, TrainingDiverged

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


_JOBS_IN_THIS_PROCESS = itertools.count()  # launchers may run several jobs in one process (basic, joblib)


def process_info(started: float, jobs_before: int) -> dict[str, Any]:
    """Where and when the job ran, so the report can say which jobs shared a process (CPU peak memory
    then holds what earlier jobs left) or ran at the same time on one machine (sharing its cores)."""
    return {
        "host": platform.node(),
        "pid": os.getpid(),
        "jobs_before": jobs_before,
        "torch_threads": torch.get_num_threads(),
        "started": started,
        "ended": time.time(),
    }


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


def run(cfg: DictConfig) -> float:
    """One Hydra job: train, or say in one line why not and record it in the job's `error.json`.

    In a sweep a failed job returns NaN so the others still run (the report lists it as failed);
    alone it exits non-zero: 2 for bad input, 1 for a failed run, 130 when interrupted (Ctrl-C stops
    a sweep too). With resume=true a job that already finished is not run again.
    """
    output_dir = Path(cfg.paths.output_dir)
    metrics, error_file = output_dir / "metrics.json", output_dir / "error.json"
    if resuming(cfg) and metrics.is_file():
        log.info("already finished, not run again: %s", metrics)
        return json.loads(metrics.read_text())["val"]["val/acc"]
    error_file.unlink(missing_ok=True)  # from an earlier attempt of a resumed run
    try:
        return train(cfg)["val"]["val/acc"]
    except (Exception, KeyboardInterrupt) as err:
        status, code, message, expected = _classify(err)
        trace = None if expected else traceback.format_exc()
        if rank_zero_only.rank == 0:  # DDP: every process fails alike; one writes
            write_json(error_file, {"status": status, "error": message, "type": type(err).__name__, "traceback": trace})
        log.error("error: %s", message, exc_info=not expected)
        print(f"error: {message}", file=sys.stderr)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if status == "failed" and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return float("nan")
        raise SystemExit(code) from None


def _classify(err: BaseException) -> tuple[str, int, str, bool]:
    """(status, exit code, one-line message, expected) of an exception that ended a run; only an
    unexpected one (a bug, most likely) gets its traceback recorded."""
    if isinstance(err, config.ConfigError):
        return "failed", 2, str(err), True
    if isinstance(err, Interrupted):
        return "interrupted", 130, str(err), True
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", 130, _INTERRUPTED_OUTSIDE_A_STEP, True
    if isinstance(err, TrainingDiverged):
        return "failed", 1, str(err), True
    if isinstance(err, torch.OutOfMemoryError):
        return "failed", 1, f"out of memory ({config.first_line(err)}). Fix: a lower data.batch_size", True
    message = f"{type(err).__name__}: {config.first_line(err)} (traceback in error.json and the job's log)"
    return "failed", 1, message, False


_INTERRUPTED_OUTSIDE_A_STEP = (
    "interrupted outside a training step, no checkpoint saved. Fix: the same command with resume=true "
    "continues from the last epoch's checkpoint, if the run got that far"
)


def resuming(cfg: DictConfig) -> bool:
    return config.wants_resume(cfg.get("resume"), cfg.get("ckpt_path"))


def resume_from(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """The checkpoint `fit` continues from: the file in ckpt_path, or with resume=true this run's last.ckpt."""
    if cfg.get("ckpt_path") not in (None, "last"):
        return str(cfg.ckpt_path)
    if not resuming(cfg):
        return None
    last = last_checkpoint(trainer)
    if last is None:
        raise config.ConfigError(
            "resume=true needs the checkpoint it resumes from. Fix: callbacks=default (callbacks.last_checkpoint)"
        )
    if not last.is_file():
        log.warning("resume=true: no %s yet, starting from the beginning", last)
        return None
    log.info("resuming from %s", last)
    return str(last)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one strategy, evaluate its best checkpoint on val and test, write `metrics.json`."""
    started, jobs_before = time.time(), next(_JOBS_IN_THIS_PROCESS)
    config.validate(cfg)
    check_backbone(OmegaConf.to_container(cfg.model, resolve=True), cfg.data.max_length)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule: TextClassificationDataModule = _instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")  # fail on bad data before the model is loaded
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    resumed_from = resume_from(cfg, trainer)
    with warnings.catch_warnings():  # the datamodule carries the loader's position (see its state_dict)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from, weights_only=True)
    cost = CostMonitor.run_summary(trainer)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]

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
        "epochs_run": int(cost.pop("perf/epochs_trained", trainer.current_epoch)),
        "device": str(trainer.strategy.root_device),
        "devices": trainer.world_size,  # DDP processes; batch_size is per process
        "val": {k: float(v) for k, v in val.items()},
        "test": {k: float(v) for k, v in test.items()},
        "cost": {**cost, "checkpoint_size_mb": Path(best).stat().st_size / 2**20 if best else None},
        "checkpoint": best,
        "resumed_from": resumed_from,
        "dropped_empty_texts": datamodule.dropped,
        "provenance": provenance(datamodule),
        "process": process_info(started, jobs_before),
    }
    if not trainer.is_global_zero:  # DDP: every process ran this; one writes
        return record
    write_json(output_dir / "metrics.json", record)
    if (last := last_checkpoint(trainer)) is not None:
        last.unlink(missing_ok=True)  # only needed to resume; the run is done
    log_hparams_with_results(trainer, record)
    log.info(summary_line(record))
    log.info("metrics written to %s", output_dir / "metrics.json")
    return record
