"""The fine-tuning strategies: one LightningModule each, on one base class, looked up by name in `registry`.

Every module of this package is imported here, so a strategy registers itself by being in the package.
"""

import importlib
import pkgutil

from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import names, register, strategy_class

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FineTuningStrategy", "names", "register", "strategy_class"]
