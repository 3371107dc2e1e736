"""Compare fine-tuning strategies (full, frozen, LoRA, gradual) of pretrained transformers."""

from pathlib import Path

__version__ = "0.1.0"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the Hydra configs (the package is installed editable)
