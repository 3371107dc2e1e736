"""Reading one setting of a composed config (a number, or the object a `_target_` names), or one ConfigError
naming the setting and the fix."""

from __future__ import annotations

import importlib
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftcompare.errors import ConfigError


def integer_setting(cfg: DictConfig, key: str, fix: str, minimum: int = 1) -> int:
    """An integer >= minimum (a bool is not one)."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} is invalid: it must be an integer >= {minimum}. Fix: {fix}")
    return value


def number_setting(
    cfg: DictConfig, key: str, fix: str, low: float = 0.0, high: float = math.inf, low_included: bool = False
) -> float:
    """A finite number in (low, high), or [low, high) with `low_included`."""
    value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not (low <= value if low_included else low < value) or not value < high:
        above = f">= {low:g}" if low_included else f"> {low:g}"
        bounds = above if high == math.inf else f"{above} and < {high:g}"
        raise ConfigError(f"{key}={value!r} is invalid: it must be a finite number {bounds}. Fix: {fix}")
    return value


def target_setting(key: str, target: str) -> Any:
    """The object a `_target_` string names (`module.attribute`), imported."""
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"{key}={target!r} cannot be imported ({type(err).__name__}: {err}). "
            "Fix: check the spelling of the module and class"
        ) from None
