"""Checks of a composed config, run before any model or data is loaded: a typo costs seconds, not an epoch.

Settings every run has are checked here; a strategy's own knobs are checked by its class
(`FineTuningStrategy.check_config`), found through the strategy registry.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, get_args

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf

from ftcompare.errors import ConfigError
from ftcompare.settings import integer_setting, number_setting, target_setting
from ftcompare.strategies import registry

PRECISIONS = sorted({str(p) for literal in get_args(_PRECISION_INPUT) for p in get_args(literal)})
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
CHECKED_GROUPS = ("strategy", "data", "optimizer", "scheduler", "trainer", "callbacks", "logger")


def validate(cfg: DictConfig) -> None:
    """Fail fast on settings that can never work, before any model or data is loaded."""
    number_setting(cfg, "lr_multiplier", "lr_multiplier=1.0")
    if OmegaConf.is_interpolation(cfg.optimizer, "lr"):  # the strategy's default_lr x lr_multiplier
        number_setting(
            cfg, "default_lr", "the strategy yaml's learning rate, e.g. default_lr: 1e-4, or optimizer.lr=..."
        )
    number_setting(cfg, "optimizer.lr", "e.g. optimizer.lr=5e-5")
    integer_setting(cfg, "data.batch_size", "e.g. data.batch_size=16")
    if OmegaConf.select(cfg, "data.eval_batch_size") is not None:
        integer_setting(cfg, "data.eval_batch_size", "e.g. data.eval_batch_size=64, or null for twice data.batch_size")
    integer_setting(cfg, "data.max_length", "e.g. data.max_length=256", minimum=8)
    for split in ("train_size", "val_size", "test_size"):
        integer_setting(cfg, f"data.{split}", f"e.g. data.{split}=1000")
    if OmegaConf.select(cfg, "trainer.max_epochs") is not None:
        integer_setting(cfg, "trainer.max_epochs", "e.g. trainer.max_epochs=3")
    precision = OmegaConf.select(cfg, "trainer.precision")
    if str(precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r} is not a precision Lightning knows. "
            f"Fix: one of {', '.join(PRECISIONS)}, or drop the override (auto: bf16-mixed where supported)"
        )
    _validate_launch(cfg)
    strategy = registry.check(cfg.strategy)
    for group in CHECKED_GROUPS:
        check_keys(cfg.get(group), group)
    strategy.check_config(cfg)
    name = OmegaConf.select(cfg, "model.name_or_path")
    looks_local = isinstance(name, str) and name.startswith(("/", ".", "~"))
    if not name or (looks_local and not Path(name).expanduser().exists()):
        raise ConfigError(
            f"model.name_or_path={name!r} does not exist. Fix: model=minilm (embedded), "
            "or model.name_or_path=<an existing local folder or a Hugging Face Hub name>"
        )
    if cfg.get("ckpt_path") not in (None, "last") and not Path(cfg.ckpt_path).expanduser().is_file():
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is not a checkpoint file. Fix: a .ckpt written by an earlier run, "
            "or resume=true to continue the last run of the same command"
        )


def accepted_arguments(target: Any) -> set[str] | None:
    """Keyword arguments a callable or class accepts (following `**kwargs` up the MRO); None: any."""
    owners = [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]
    names: set[str] = set()
    for fn in owners:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None


def check_keys(node: Any, path: str) -> None:
    """Every key of every `_target_` node must be an argument of its target: catches `+strategy.rr=4`."""
    if not isinstance(node, DictConfig):
        return
    target_name = node.get("_target_")
    if isinstance(target_name, str):
        target = target_setting(f"{path}._target_", target_name)
        accepted = accepted_arguments(target)
        for key in node:
            if accepted is not None and key not in accepted | HYDRA_KEYS:
                close = difflib.get_close_matches(str(key), sorted(accepted), n=1)
                hint = f"did you mean {path}.{close[0]}?" if close else f"valid keys: {', '.join(sorted(accepted))}"
                raise ConfigError(f"{path}.{key} is not a setting of {target_name}. Fix: {hint}")
    for key in node:
        if OmegaConf.is_config(node._get_node(key)):
            check_keys(node._get_node(key), f"{path}.{key}")


def _validate_launch(cfg: DictConfig) -> None:
    """Lightning's `ddp` starts its other processes by running the command line again; in a sweep that
    line starts a sweep. SLURM (srun) and ddp_spawn start the processes themselves."""
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if strategy.startswith("ddp") and "spawn" not in strategy and in_sweep and not SLURMEnvironment.detect():
        raise ConfigError(
            f"trainer.strategy={strategy} re-runs the command line for each device, which in a sweep (-m) starts "
            "new sweeps. Fix: trainer.strategy=ddp_spawn in a sweep, hydra/launcher=slurm on a cluster, or one run "
            "without -m"
        )
