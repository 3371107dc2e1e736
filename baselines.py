"""Classical baselines on the same split as training: `python baselines.py [overrides]`."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ftcompare.baselines import run
from ftcompare.config import register_resolvers
from ftcompare.reporting import write_json

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Writes baselines.json into the run's output dir."""
    write_json(Path(cfg.paths.output_dir) / "baselines.json", run(cfg))


if __name__ == "__main__":
    main()
