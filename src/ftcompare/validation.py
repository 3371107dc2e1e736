"""Checks of a composed config, run before any model or data is loaded: a typo costs seconds, not an epoch.

Settings every run has are checked here; a strategy's own knobs are checked by its class
(`FineTuningStrategy.check_config`), found through the strategy registry.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf

from ftcompare.data.truncation import check_truncation
from ftcompare.errors import ConfigError
from ftcompare.models import ATTENTION_CHOICES
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
    check_truncation(OmegaConf.select(cfg, "data.truncation", default="head"))
    for split in ("train_size", "val_size", "test_size"):
        integer_setting(cfg, f"data.{split}", f"e.g. data.{split}=1000")
    if OmegaConf.select(cfg, "data.train_subset") is not None:
        subset = integer_setting(cfg, "data.train_subset", "e.g. data.train_subset=500, or null for the whole split")
        if subset > cfg.data.train_size:
            raise ConfigError(
                f"data.train_subset={subset} is larger than the train split (data.train_size={cfg.data.train_size})."
                " Fix: data.train_subset <= data.train_size, or null for the whole split"
            )
    if OmegaConf.select(cfg, "trainer.max_epochs") is not None:
        integer_setting(cfg, "trainer.max_epochs", "e.g. trainer.max_epochs=3")
    precision = OmegaConf.select(cfg, "trainer.precision")
    if str(precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r} is not a precision Lightning knows. "
            f"Fix: one of {', '.join(PRECISIONS)}, or drop the override (auto: bf16-mixed where supported)"
        )
    _validate_training(cfg)
    _validate_devices(cfg)
    _validate_launch(cfg)
    strategy = registry.check(cfg.strategy)
    for group in CHECKED_GROUPS:
        check_keys(cfg.get(group), group)
    _validate_loggers(cfg)
    strategy.check_config(cfg)
    attention = OmegaConf.select(cfg, "model.attn_implementation")
    if attention is not None and attention not in ATTENTION_CHOICES:
        raise ConfigError(
            f"model.attn_implementation={attention!r} is not an attention function here. "
            f"Fix: one of {', '.join(ATTENTION_CHOICES)}"
        )
    fast_dropout = OmegaConf.select(cfg, "model.fast_dropout")
    if fast_dropout not in (None, True, False):
        raise ConfigError(
            f"model.fast_dropout={fast_dropout!r} is not a boolean. "
            "Fix: model.fast_dropout=true (the cheaper dropout mask) or false (torch's)"
        )
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


def _present(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, throw_on_resolution_failure=False) is not None


def _validate_training(cfg: DictConfig) -> None:
    """Seed, optimizer, schedule and trainer numbers in the range where they mean something."""
    integer_setting(cfg, "seed", "e.g. seed=0", minimum=0)
    optional = {  # key: (fix, low, high, low included)
        "optimizer.weight_decay": ("e.g. optimizer.weight_decay=0.01 (0 for none)", 0.0, math.inf, True),
        "optimizer.eps": ("e.g. optimizer.eps=1e-8", 0.0, math.inf, False),
        "scheduler.warmup_ratio": (
            "e.g. scheduler.warmup_ratio=0.06 (the share of steps spent warming up)",
            0,
            1,
            True,
        ),
        "trainer.gradient_clip_val": (
            "e.g. trainer.gradient_clip_val=1.0, or null for no clipping",
            0.0,
            math.inf,
            True,
        ),
    }
    for key, (fix, low, high, low_included) in optional.items():
        if _present(cfg, key):
            number_setting(cfg, key, fix, low, high, low_included)
    if _present(cfg, "optimizer.betas"):
        betas = OmegaConf.select(cfg, "optimizer.betas")
        numbers = isinstance(betas, Sequence) and len(betas) == 2
        if not numbers or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(
                f"optimizer.betas={_plain(betas)!r} is invalid: it must be two numbers >= 0 and < 1. "
                "Fix: e.g. optimizer.betas=[0.9,0.999]"
            )
    for key, fix in (
        ("trainer.accumulate_grad_batches", "e.g. +trainer.accumulate_grad_batches=2 (+: not in conf/trainer)"),
        ("trainer.log_every_n_steps", "e.g. trainer.log_every_n_steps=10"),
    ):
        if _present(cfg, key):
            integer_setting(cfg, key, fix)
    interval = OmegaConf.select(cfg, "trainer.val_check_interval")
    if interval is not None and (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or interval <= 0
        or (isinstance(interval, float) and interval > 1)
    ):
        raise ConfigError(
            f"trainer.val_check_interval={interval!r} is invalid: it must be a number of training batches (an "
            "integer >= 1) or a fraction of an epoch (0.0 < x <= 1.0). Fix: e.g. +trainer.val_check_interval=0.5"
        )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = OmegaConf.select(cfg, f"trainer.{key}")
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value < 0
            or (isinstance(value, float) and value > 1)
        ):
            raise ConfigError(
                f"trainer.{key}={value!r} is invalid: it must be a number of batches (an integer >= 0) or a "
                f"fraction between 0.0 and 1.0. Fix: e.g. trainer.{key}=10, or null for all"
            )


def check_val_check_interval(cfg: DictConfig, train_batches: int) -> None:
    """A validation every n batches needs n within an epoch (known once the data is split)."""
    interval = OmegaConf.select(cfg, "trainer.val_check_interval")
    limit = OmegaConf.select(cfg, "trainer.limit_train_batches")
    if isinstance(limit, int):
        train_batches = min(train_batches, limit)
    elif isinstance(limit, float):
        train_batches = int(train_batches * limit)
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > train_batches:
        raise ConfigError(
            f"trainer.val_check_interval={interval} is more than the {train_batches} training batches of an epoch. "
            f"Fix: trainer.val_check_interval={train_batches} or fewer, or a fraction of the epoch, e.g. 0.5"
        )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _validate_loggers(cfg: DictConfig) -> None:
    """A logger whose package is an optional extra (MLflow) is asked for before a run starts, not mid-way."""
    for name, logger in (cfg.get("logger") or {}).items():
        target = str((logger or {}).get("_target_", ""))
        if target.endswith("MLFlowLogger") and importlib.util.find_spec("mlflow") is None:
            raise ConfigError(
                f"logger.{name} needs MLflow, which is not installed. Fix: pip install -e '.[mlflow]' (the client "
                "and a local store), or logger=tensorboard / logger=csv"
            )


def _validate_devices(cfg: DictConfig) -> None:
    """A GPU asked for where there is none (or fewer than asked) is refused before anything loads."""
    import torch

    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    devices = OmegaConf.select(cfg, "trainer.devices", default="auto")
    if accelerator in ("gpu", "cuda"):
        have = torch.cuda.device_count()
        if have == 0:
            raise ConfigError(
                f"trainer.accelerator={accelerator} but this machine has no GPU that PyTorch can use "
                f"(torch {torch.__version__}). Fix: trainer.accelerator=auto (the CPU here), or run where a GPU is"
            )
        if isinstance(devices, int) and not isinstance(devices, bool) and devices > have:
            raise ConfigError(
                f"trainer.devices={devices} but this machine has {have} GPU(s). Fix: trainer.devices={have} or fewer"
            )
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps but MPS is not available here. Fix: trainer.accelerator=auto")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        raise ConfigError(f"trainer.devices={devices} is invalid. Fix: trainer.devices=1 (or -1 for all, or auto)")


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
