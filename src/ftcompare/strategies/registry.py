"""Strategy names -> classes, as peft maps method names to tuners.

A class registers the names it serves with `@register(...)`; one class may serve several names that
differ only in settings (`lora`, `lora_all` and `dora` are configs of `LoRA`). Each name has its config
at `conf/strategy/<name>.yaml`, whose `strategy.name` is the name and `_target_` the class. Every module
of this package is imported when the package is, so a new strategy is one module plus one yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ftcompare.errors import ConfigError
from ftcompare.settings import target_setting

T = TypeVar("T", bound=type)
_STRATEGIES: dict[str, type] = {}


def register(*names: str) -> Callable[[T], T]:
    """Class decorator: the strategy names this class serves."""

    def add(cls: T) -> T:
        for name in names:
            if _STRATEGIES.get(name, cls) is not cls:
                raise ValueError(f"strategy name {name!r} is already registered to {_STRATEGIES[name].__qualname__}")
            _STRATEGIES[name] = cls
        return cls

    return add


def names() -> list[str]:
    """Every registered strategy name, sorted (the package imports all its modules first, so all are here)."""
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> type:
    """The class registered under `name`."""
    if name not in _STRATEGIES:
        raise ConfigError(
            f"strategy.name={name!r} is not a registered strategy. Fix: one of {', '.join(names())}, "
            "or register the class with @register"
        )
    return _STRATEGIES[name]


def check(node: Any) -> type:
    """The class of a `strategy` config node, which must name a registered strategy in `name` and that
    strategy's class in `_target_` (imported first: a strategy outside the package registers on import)."""
    target = node.get("_target_")
    imported = target_setting("strategy._target_", target)
    cls = strategy_class(node.get("name"))
    if imported is not cls:
        raise ConfigError(
            f"strategy._target_={target!r} is not the class registered for strategy {node.get('name')!r}. "
            f"Fix: strategy._target_={cls.__module__}.{cls.__qualname__}"
        )
    return cls
