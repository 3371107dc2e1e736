"""A run's folder as the tools after training read it: its resolved config and its checkpoint loaded back.

Each run writes `resolved_config.yaml` beside `.hydra/`: the config with every interpolation resolved
(precision, learning rate, model path, split sizes, any slicing), so eval/predict/export use what the run used,
not what the `${ftc.*}` resolvers would answer on the machine that evaluates.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ftcompare.builders import build_module
from ftcompare.errors import ConfigError
from ftcompare.io import RESOLVED_CONFIG, write_atomic
from ftcompare.models import load_pretrained
from ftcompare.strategies import FineTuningStrategy

log = logging.getLogger(__name__)
_CKPT_FIX = "Fix: a .ckpt from <run>/checkpoints/, a run or sweep folder, or best (the newest run's best checkpoint)"


def save_resolved_config(cfg: DictConfig, run_dir: Path) -> Path:
    return write_atomic(run_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))


def find_checkpoint(ckpt_path: str) -> Path:
    """What `ckpt_path=` names, as a checkpoint file: a .ckpt as is; a run folder: its best checkpoint; a sweep
    folder: the best checkpoint of its job with the highest val accuracy; `best`: that of the newest train.py
    run or sweep under outputs/ and multirun/."""
    path = Path(str(ckpt_path)).expanduser()
    if str(ckpt_path) == "best" and not path.exists():
        return _newest_best()
    if path.is_dir():
        found = _best_in(path)
        if found is None:
            raise ConfigError(f"ckpt_path={str(ckpt_path)!r} is a folder with no finished run in it. {_CKPT_FIX}")
        log.info("ckpt_path=%s: %s (val/acc %.4f, the best in that folder)", ckpt_path, *found)
        return found[0]
    return path


def _newest_best() -> Path:
    """`ckpt_path=best`: the best checkpoint (by val/acc) of the newest train.py run or sweep, by its start time
    (the `<date>/<time>` of its folder), under outputs/ and multirun/."""
    folders = [p.parent for p in Path("outputs").glob("*/*/.hydra")] + list(Path("multirun").glob("*/*"))
    newest_first = sorted(folders, key=lambda f: f.relative_to(f.parents[1]).parts, reverse=True)
    for folder in newest_first:  # reads only as far as it must
        found = _best_in(folder)
        if found is not None:
            kind = "run" if (folder / "metrics.json").is_file() else "sweep"
            log.info(
                "ckpt_path=best: %s (val/acc %.4f), from %s, the newest %s with a finished run under outputs/ and "
                "multirun/ (started %s)",
                *found,
                folder,
                kind,
                " ".join(folder.relative_to(folder.parents[1]).parts),
            )
            return found[0]
    raise ConfigError(f"ckpt_path=best: no finished train.py run under outputs/ or multirun/ here. {_CKPT_FIX}")


def _best_in(folder: Path) -> tuple[Path, float] | None:
    """The best checkpoint of a finished run folder, or of a sweep folder's best job (by val accuracy), with
    its val accuracy."""
    records = [folder / "metrics.json"] if (folder / "metrics.json").is_file() else list(folder.glob("*/metrics.json"))
    best, best_acc = None, -1.0
    for record in records:
        try:
            metrics = json.loads(record.read_text())
            # found beside the record: a run folder copied elsewhere still resolves
            checkpoint = record.parent.absolute() / "checkpoints" / Path(metrics["checkpoint"]).name
            acc = float(metrics["val"]["val/acc"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if checkpoint.is_file() and acc > best_acc:
            best, best_acc = checkpoint, acc
    return (best, best_acc) if best is not None else None


def run_dir_of(ckpt_path: Path) -> Path:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/x.ckpt`), or one clear error."""
    run_dir = ckpt_path.parent.parent
    if not ckpt_path.is_file() or not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a checkpoint inside a run folder (no {run_dir / '.hydra'}). "
            + _CKPT_FIX
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
    return _upgraded(OmegaConf.load(resolved))


def _upgraded(run: DictConfig) -> DictConfig:
    """A run trained before a strategy setting changed, in today's terms: frozen read the last layer only, and
    gradual's epoch schedule (`unfreeze_every`, `lr_decay`) does not matter once it has trained."""
    strategy = run.get("strategy") or {}
    if strategy.get("name") == "frozen" and "layers" not in strategy:
        strategy.layers = [-1]
    if strategy.get("name") == "gradual":
        for key in ("unfreeze_every", "lr_decay"):
            strategy.pop(key, None)
    return run


def read_checkpoint(ckpt_path: Path) -> dict:
    """A checkpoint's contents (tensors and plain containers only), or one clear error: a file that is not
    one is refused, never retried with an unsafe load."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler fails in many ways on a file that is no checkpoint
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a checkpoint this package wrote ({type(err).__name__}). {_CKPT_FIX}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} holds no Lightning checkpoint. {_CKPT_FIX}")
    return checkpoint


def load_trained(ckpt_path: Path, run: DictConfig) -> FineTuningStrategy:
    """The run's strategy module with the checkpoint's weights, in eval mode (a checkpoint of trained
    parameters only goes onto the base model the run's config names)."""
    module = build_module(run)
    checkpoint = read_checkpoint(ckpt_path)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def load_tokenizer(run: DictConfig) -> PreTrainedTokenizerBase:
    """The tokenizer the run trained with."""
    return load_pretrained(AutoTokenizer, run.data.tokenizer, run.model.get("trust_remote_code", False))
