"""Hydra entry point: `python train.py strategy=lora`, `python train.py -m strategy=full,frozen,lora,gradual`."""

import hydra
from omegaconf import DictConfig

from ftcompare.job import run
from ftcompare.resolvers import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train one configuration; returns best val accuracy for sweepers (NaN for a failed sweep job)."""
    return run(cfg)


if __name__ == "__main__":
    main()
