"""Re-evaluate a checkpoint: `python eval.py ckpt_path=outputs/<date>/<time>/checkpoints/epoch_02.ckpt`."""

import hydra
from omegaconf import DictConfig

from ftcompare.config import bad_input_exits, register_resolvers
from ftcompare.evaluation import evaluate

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Writes eval.json (same metric names as training) into outputs/eval/<date>/<time>/."""
    with bad_input_exits():
        evaluate(cfg)


if __name__ == "__main__":
    main()
