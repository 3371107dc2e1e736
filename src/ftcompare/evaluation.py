"""Re-evaluate a checkpoint with the exact settings of the run that wrote it (`python eval.py ckpt_path=...`):
`eval.json`, and `predictions.csv` per example as a training run writes it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ftcompare.builders import build_datamodule, build_module
from ftcompare.errors import ConfigError
from ftcompare.io import write_json
from ftcompare.per_example import PREDICTIONS_FILE, predictions_frame, write_predictions
from ftcompare.provenance import provenance
from ftcompare.runs import find_checkpoint, read_checkpoint, run_config

log = logging.getLogger(__name__)
SPLITS = ("test", "validation")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the run's strategy and data, load the checkpoint, evaluate, write `eval.json`."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} is invalid. Fix: split=test or split=validation")
    ckpt_path = find_checkpoint(cfg.ckpt_path)
    run = run_config(ckpt_path)
    read_checkpoint(ckpt_path)  # a file that is not a checkpoint: one line, before the data is read
    other_data = "source" in cfg.data and "where" not in cfg.data
    run.data = OmegaConf.merge(run.data, cfg.data)
    if other_data:  # the run's row filter (e.g. source=imdb) applies only where the new file has that column
        run.data.where_if_present = True
    run.trainer = OmegaConf.merge(run.trainer, cfg.trainer)
    if run.trainer.get("profiler"):  # debug=profile: the profile of this evaluation goes beside eval.json
        run.trainer.profiler.dirpath = cfg.paths.output_dir
    datamodule = build_datamodule(run)
    datamodule.setup("test")
    module = build_module(run)
    # the run's own trainer settings (precision, accelerator, batch limits, devices), without callbacks and logger
    trainer = instantiate(
        run.trainer,
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=cfg.paths.output_dir,
    )
    evaluate_split = trainer.test if cfg.split == "test" else trainer.validate
    metrics = evaluate_split(module, datamodule=datamodule, ckpt_path=str(ckpt_path), weights_only=True, verbose=False)[
        0
    ]
    record = {
        "checkpoint": str(ckpt_path),
        "split": cfg.split,
        "strategy": module.name,
        "model": run.model.name_or_path,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "data": OmegaConf.to_container(run.data, resolve=True),
        "provenance": provenance(datamodule.fingerprints),
    }
    out = Path(cfg.paths.output_dir)
    scored = {cfg.split: module.predictions.get(cfg.split)}
    write_predictions(out, predictions_frame(scored, datamodule.fingerprints, module.label_names))
    write_json(out / "eval.json", record)
    prefix = "test" if cfg.split == "test" else "val"
    shown = ("acc", "f1", "auroc", "loss")
    figures = " | ".join(f"{name} {metrics[f'{prefix}/{name}']:.4f}" for name in shown if f"{prefix}/{name}" in metrics)
    log.info("%s: %s | %d examples", cfg.split, figures, int(metrics.get(f"{prefix}/examples", 0)))
    log.info("metrics written to %s, per example to %s", out / "eval.json", out / PREDICTIONS_FILE)
    return record
