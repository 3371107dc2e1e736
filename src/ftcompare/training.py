"""One training run: validate, build, fit, evaluate the best checkpoint on val and test, write `metrics.json`."""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ftcompare.builders import build_datamodule, build_module, build_trainer
from ftcompare.callbacks import CostMonitor, TrainingMemory
from ftcompare.checkpointing import validation_of
from ftcompare.io import write_json
from ftcompare.models import check_backbone, portable_name
from ftcompare.per_example import PREDICTIONS_FILE, predictions_frame, write_predictions
from ftcompare.provenance import next_job_in_process, process_info, provenance
from ftcompare.report.tables import summary_line
from ftcompare.resume import check_resumable, last_checkpoint, resume_from, run_id
from ftcompare.runs import save_resolved_config
from ftcompare.validation import check_val_check_interval, validate

log = logging.getLogger(__name__)
SLICING = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "fast_dev_run")
HPARAM_COSTS = (
    *("perf/fit_time_s", "perf/train_samples_per_s", "perf/peak_memory_mb", "perf/train_memory_mb"),
    *("memory/tensor_peak_mib", "params/trainable"),
)
# TensorBoard's Custom Scalars page: each chart draws every run whose tags match, so a sweep compares on one page
COMPARISON_LAYOUT = {
    "accuracy": {
        "val/acc": ["Multiline", ["val/acc$"]],
        "train/acc": ["Multiline", ["train/acc$"]],
        "loss (train epoch, val)": ["Multiline", ["train/loss_epoch", "val/loss"]],
    },
    "time": {
        "train samples/s": ["Multiline", ["perf/train_samples_per_s"]],
        "epoch time (s)": ["Multiline", ["perf/epoch_time_s"]],
        "fit time (s)": ["Multiline", ["run/fit_time_s"]],
    },
    "memory": {
        "training memory, tensors at the step's peak (MiB)": ["Multiline", ["memory/total_mib"]],
        "by category (MiB)": ["Multiline", ["memory/(parameters|gradients|optimizer_state|activations)_mib"]],
        "process (RSS on CPU, allocator on GPU) above start (MB)": ["Multiline", ["perf/train_memory_mb"]],
        "trainable parameters": ["Multiline", ["params/trainable$"]],
    },
}


def add_comparison_layout(trainer: L.Trainer) -> None:
    """The Custom Scalars layout (accuracy / time / memory) in each TensorBoard run."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(COMPARISON_LAYOUT)


def log_hparams_with_results(trainer: L.Trainer, record: dict[str, Any]) -> None:
    """Hyper-parameters next to the final metrics, so TensorBoard's HParams tab compares a sweep's runs."""
    hparams = record["hparams"]
    params = {
        "strategy": record["strategy"],
        "model": record["model"],
        "seed": record["seed"],
        **{k: v for k, v in hparams.items() if k != "strategy"},
        **{
            f"strategy/{k}": v for k, v in hparams["strategy"].items() if k not in ("_target_", "name")
        },  # r, layer_lr_decay
    }
    metrics = {
        "hparams/val_acc": record["val"]["val/acc"],
        "hparams/test_acc": record["test"]["test/acc"],
        "hparams/test_f1": record["test"]["test/f1"],
        **{f"hparams/{k.split('/')[-1]}": v for k, v in record["cost"].items() if k in HPARAM_COSTS and v is not None},
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams tab pairs them
            logger.log_hyperparams(params, metrics=metrics)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()  # after the fit's last write (CSVLogger keeps rows in memory until saved)


def start_line(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer) -> str:
    """What a run is about to do, in one line: the settings a comparison turns on, and where it writes."""
    data = cfg.data
    fast_dev_run = cfg.trainer.get("fast_dev_run")
    if fast_dev_run:  # debug=fdr: Lightning runs n batches of each, whatever the epochs and sizes say
        batches = 1 if fast_dev_run is True else int(fast_dev_run)
        extent = f"fast_dev_run: {batches} batch(es) each of train/val/test, no checkpoint"
    else:  # a learning curve's point trains on a subset; debug=limit and sliced runs see a few batches of each
        train = data.train_size if data.get("train_subset") is None else f"{data.train_subset} of {data.train_size}"
        extent = f"{cfg.trainer.max_epochs} epochs, train/val/test {train}/{data.val_size}/{data.test_size}"
        limits = [
            f"{split} {value}"
            for split in ("train", "val", "test")
            if (value := cfg.trainer.get(f"limit_{split}_batches")) not in (None, 1.0)
        ]
        if limits:
            extent += f" (batches limited: {', '.join(limits)})"
    return (
        f"{module.name} on {portable_name(cfg.model.name_or_path)}: lr {cfg.optimizer.lr:g}, batch {data.batch_size}, "
        f"{extent}, max_length {data.max_length}, {trainer.precision} on {trainer.strategy.root_device.type} "
        f"-> {cfg.paths.output_dir} (run {run_id(cfg.paths.output_dir)})"
    )


def validated(module: L.LightningModule, trainer: L.Trainer, best: str | None) -> dict[str, Any] | None:
    """The validation (`metrics`, `predictions`) of the weights the run reports, when one during fit already
    scored exactly those weights (the best checkpoint's, or the final ones without a checkpoint callback); None:
    validate them."""
    if best is not None:
        return validation_of(best)
    last = module.last_validation()
    return last if last and last["global_step"] == trainer.global_step else None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one strategy, evaluate its best checkpoint on val and test, write `metrics.json`."""
    started, jobs_before = time.time(), next_job_in_process()
    validate(cfg)
    check_resumable(cfg)
    check_backbone(OmegaConf.to_container(cfg.model, resolve=True), cfg.data.max_length)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # fail on bad data before the model is loaded
    check_val_check_interval(cfg, math.ceil(len(datamodule.splits["train"]) / cfg.data.batch_size))
    cfg.data.label_names = datamodule.label_names  # inferred from the data when the config gives none
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    add_comparison_layout(trainer)
    if trainer.is_global_zero:
        save_resolved_config(cfg, output_dir)

    resumed_from = resume_from(cfg, trainer)
    log.info(start_line(cfg, module, trainer))
    with warnings.catch_warnings():  # the datamodule carries the loader's position (see its state_dict)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from, weights_only=True)
    cost = CostMonitor.run_summary(trainer)
    memory = next((c.record for c in trainer.callbacks if isinstance(c, TrainingMemory)), None)
    cost["memory/tensor_peak_mib"] = memory["at_peak_mib"]["total"] if memory else None  # the headline figure
    stages = memory.get("stages", []) if memory else []  # gradual: the first stage, before layers unfreeze
    cost["memory/tensor_first_stage_mib"] = stages[0]["total_mib"] if stages else cost["memory/tensor_peak_mib"]
    checkpoint = trainer.checkpoint_callback
    best = str(Path(checkpoint.best_model_path).absolute()) if checkpoint and checkpoint.best_model_path else None
    validation = validated(module, trainer, best)
    if validation is None or validation["predictions"] is None:
        metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        validation = {"metrics": metrics[0], "predictions": module.predictions.get("validation")}
    val = validation["metrics"]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]

    record = {
        "run_id": run_id(output_dir),
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
        "slicing": {key: cfg.trainer.get(key) for key in SLICING},  # val/test examples scored: val/, test/examples
        "device": str(trainer.strategy.root_device),
        "devices": trainer.world_size,  # DDP processes; batch_size is per process
        "val": {k: float(v) for k, v in val.items()},
        "test": {k: float(v) for k, v in test.items()},
        "cost": {**cost, "checkpoint_size_mb": Path(best).stat().st_size / 2**20 if best else None},
        "memory": memory,  # by category: docs/memory.md
        "checkpoint": best,
        "predictions": PREDICTIONS_FILE,  # per example, validation and test: the report's paired tests
        "resumed_from": resumed_from,
        "dropped_empty_texts": datamodule.dropped,
        "provenance": provenance(datamodule.fingerprints),
        "process": process_info(started, jobs_before),
    }
    if not trainer.is_global_zero:  # DDP: every process ran this; one writes
        return record
    scored = {"validation": validation["predictions"], "test": module.predictions.get("test")}
    write_predictions(output_dir, predictions_frame(scored, datamodule.fingerprints, module.label_names))
    write_json(output_dir / "metrics.json", record)  # last: a run folder with metrics.json is complete
    if (last := last_checkpoint(trainer)) is not None:
        last.unlink(missing_ok=True)  # only needed to resume; the run is done
    log_hparams_with_results(trainer, record)
    log.info(summary_line(record))
    log.info("metrics written to %s", output_dir / "metrics.json")
    return record
