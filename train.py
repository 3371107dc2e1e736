"""Hydra entry point: `python train.py strategy=lora`, `python train.py -m strategy=full,frozen,lora,gradual`."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from ftcompare.config import ConfigError, register_resolvers
from ftcompare.training import train

register_resolvers()
log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train one configuration; returns best val accuracy for sweepers."""
    try:
        return train(cfg)["val"]["val/acc"]
    except ConfigError as err:
        log.error("error: %s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
