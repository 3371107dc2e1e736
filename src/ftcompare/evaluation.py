"""Re-evaluate a checkpoint with the exact settings of the run that wrote it (`python eval.py ckpt_path=...`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ftcompare.config import ConfigError
from ftcompare.reporting import write_json
from ftcompare.strategies import FineTuningStrategy
from ftcompare.training import build_module, provenance

log = logging.getLogger(__name__)
SPLITS = ("test", "validation")


def run_config(ckpt_path: Path) -> DictConfig:
    """The config of the run a checkpoint belongs to (`<run>/checkpoints/x.ckpt` -> `<run>/.hydra/config.yaml`)."""
    config_file = ckpt_path.parent.parent / ".hydra" / "config.yaml"
    if not ckpt_path.is_file() or not config_file.is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a checkpoint inside a run folder (no {config_file}). "
            "Fix: a .ckpt from <run>/checkpoints/ written by train.py"
        )
    return OmegaConf.load(config_file)


def load_trained(ckpt_path: Path) -> tuple[DictConfig, FineTuningStrategy]:
    """The run's config and its strategy module with the checkpoint's weights, in eval mode (a checkpoint
    of trained parameters only goes onto the base model the run's config names)."""
    run = run_config(ckpt_path)
    module = build_module(run)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return run, module.eval()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the run's strategy and data, load the checkpoint, evaluate, write `eval.json`."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} is invalid. Fix: split=test or split=validation")
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    run = run_config(ckpt_path)
    run.data = OmegaConf.merge(run.data, cfg.data)
    run.trainer = OmegaConf.merge(run.trainer, cfg.trainer)
    run.paths.output_dir = cfg.paths.output_dir
    datamodule = instantiate(run.data, _convert_="all")
    datamodule.setup("test")
    module = build_module(run)
    # the run's own trainer settings (precision, accelerator, batch limits, devices), without callbacks and logger
    trainer = instantiate(run.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    evaluate_split = trainer.test if cfg.split == "test" else trainer.validate
    metrics = evaluate_split(module, datamodule=datamodule, ckpt_path=str(ckpt_path), weights_only=True)[0]
    record = {
        "checkpoint": str(ckpt_path),
        "split": cfg.split,
        "strategy": module.name,
        "model": run.model.name_or_path,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "data": OmegaConf.to_container(run.data, resolve=True),
        "provenance": provenance(datamodule),
    }
    write_json(Path(cfg.paths.output_dir) / "eval.json", record)
    log.info("metrics written to %s", Path(cfg.paths.output_dir) / "eval.json")
    return record
