"""A run's folder as the tools after training read it: its resolved config and its checkpoint loaded back.

Each run writes `resolved_config.yaml` beside `.hydra/`: the config with every interpolation resolved
(precision, learning rate, model path, split sizes, any slicing), so eval/predict/export use what the run used,
not what the `${ftc.*}` resolvers would answer on the machine that evaluates.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ftcompare.builders import build_module
from ftcompare.errors import ConfigError
from ftcompare.io import write_atomic
from ftcompare.models import load_pretrained
from ftcompare.strategies import FineTuningStrategy

RESOLVED_CONFIG = "resolved_config.yaml"


def save_resolved_config(cfg: DictConfig, run_dir: Path) -> Path:
    return write_atomic(run_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))


def run_dir_of(ckpt_path: Path) -> Path:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/x.ckpt`), or one clear error."""
    run_dir = ckpt_path.parent.parent
    if not ckpt_path.is_file() or not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a checkpoint inside a run folder (no {run_dir / '.hydra'}). "
            "Fix: a .ckpt from <run>/checkpoints/ written by train.py"
        )
    return run_dir


def run_config(ckpt_path: Path) -> DictConfig:
    """The resolved config of the run a checkpoint belongs to."""
    resolved = run_dir_of(ckpt_path) / RESOLVED_CONFIG
    if not resolved.is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r}: its run folder has no {RESOLVED_CONFIG} (written by train.py since the "
            "layout of src/ftcompare/strategies/). Fix: a checkpoint of a run trained with this version"
        )
    return OmegaConf.load(resolved)


def load_trained(ckpt_path: Path, run: DictConfig) -> FineTuningStrategy:
    """The run's strategy module with the checkpoint's weights, in eval mode (a checkpoint of trained
    parameters only goes onto the base model the run's config names)."""
    module = build_module(run)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def load_tokenizer(run: DictConfig) -> PreTrainedTokenizerBase:
    """The tokenizer the run trained with."""
    return load_pretrained(AutoTokenizer, run.data.tokenizer, run.model.get("trust_remote_code", False))
