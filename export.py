"""Export a checkpoint as a Hugging Face folder: `python export.py ckpt_path=... [merge=false]`."""

import hydra
from omegaconf import DictConfig

from ftcompare.config import bad_input_exits, register_resolvers
from ftcompare.export import export

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Writes config, weights (or adapter), tokenizer and export.json into outputs/export/<date>/<time>/model/."""
    with bad_input_exits():
        export(cfg)


if __name__ == "__main__":
    main()
