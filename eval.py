"""Re-evaluate a checkpoint: `python eval.py ckpt_path=outputs/<date>/<time>/checkpoints/epoch_02.ckpt`."""

import sys

import hydra
from omegaconf import DictConfig

from ftcompare.config import ConfigError, register_resolvers
from ftcompare.evaluation import evaluate

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Writes eval.json (same metric names as training) into outputs/eval/<date>/<time>/."""
    try:
        evaluate(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
