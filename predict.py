"""Label texts with a checkpoint: `python predict.py ckpt_path=... text="..."` or `input=file.txt|.csv`."""

import hydra
from omegaconf import DictConfig

from ftcompare.config import bad_input_exits, register_resolvers
from ftcompare.prediction import predict

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Prints one JSON line per text (label, probabilities) and writes predictions.jsonl."""
    with bad_input_exits():
        predict(cfg)


if __name__ == "__main__":
    main()
