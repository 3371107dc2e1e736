"""Finding the run a command continues and the checkpoint it continues from.

`resume=true` (or `ckpt_path=last`) with the same command finds the newest earlier run (or sweep) of that
command, by its overrides, and continues it in the same folder from `checkpoints/last.ckpt`. What makes the
continuation exact travels in the checkpoint: the module's RNG state (`checkpointing.py`), the data position
(the datamodule's state), the cost totals (the cost monitor's state) and gradual unfreezing's groups.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ftcompare.errors import ConfigError

log = logging.getLogger(__name__)
RESUME_KEYS = ("resume", "ckpt_path")


def wants_resume(resume: bool | None, ckpt_path: str | None) -> bool:
    """resume=true and ckpt_path=last both mean: continue the last run of this command."""
    return bool(resume) or ckpt_path == "last"


def resuming(cfg: DictConfig) -> bool:
    return wants_resume(cfg.get("resume"), cfg.get("ckpt_path"))


def command_overrides(overrides: list[str]) -> list[str]:
    """A command's overrides minus the ones that only say whether to resume."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in RESUME_KEYS]


_RUN_DIRS: dict[tuple[str, str], str] = {}


def run_dir(root: str, stamp: str, resume: bool, ckpt_path: str | None, *, _root_: DictConfig) -> str:
    """The `${ftc.run_dir:...}` resolver: `root/stamp`, or with resume=true the newest earlier folder of the
    same command (a run's `.hydra/overrides.yaml` or a sweep's `multirun.yaml`)."""
    fresh = f"{root}/{stamp}"
    if not wants_resume(resume, ckpt_path):
        return fresh
    key = (root, stamp)  # a sweep's jobs resolve its folder again, with their own overrides: same answer
    if key not in _RUN_DIRS:
        _RUN_DIRS[key] = _previous_dir(root, _root_) or fresh
    return _RUN_DIRS[key]


def _previous_dir(root: str, cfg: DictConfig) -> str | None:
    wanted = set(command_overrides(list(cfg.hydra.overrides.task)))
    records = [*Path(root).glob("*/*/.hydra/overrides.yaml"), *Path(root).glob("*/*/multirun.yaml")]
    for record in sorted(records, key=lambda r: r.relative_to(root).parts[:2], reverse=True):
        loaded = OmegaConf.load(record)
        overrides = loaded.hydra.overrides.task if record.name == "multirun.yaml" else loaded
        if set(command_overrides(list(overrides))) == wanted:
            return "/".join([root, *record.relative_to(root).parts[:2]])
    return None


def last_checkpoint(trainer: L.Trainer) -> Path | None:
    """Where the newest-epoch checkpoint goes (the ModelCheckpoint without a monitor): what a run resumes from."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
    return None


def resume_from(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """The checkpoint `fit` continues from: the file in ckpt_path, or with resume=true this run's last.ckpt."""
    if cfg.get("ckpt_path") not in (None, "last"):
        return str(cfg.ckpt_path)
    if not resuming(cfg):
        return None
    last = last_checkpoint(trainer)
    if last is None:
        raise ConfigError(
            "resume=true needs the checkpoint it resumes from. Fix: callbacks=default (callbacks.last_checkpoint)"
        )
    if not last.is_file():
        log.warning("resume=true: no %s yet, starting from the beginning", last)
        return None
    log.info("resuming from %s", last)
    return str(last)
