"""Results are written atomically: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ftcompare.errors import ConfigError, bad_input_exits


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write to a temp file in the same folder, then rename: readers never see a half-written file.

    The temp file is created with mode 0o666, so the umask gives it the usual permissions (results are
    for sharing; `mkstemp` would make it private).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    data = text.encode() if isinstance(text, str) else text
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, record: dict[str, Any]) -> None:
    """A JSON record, written atomically."""
    write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


# What a Hydra job leaves in its folder before it has produced anything.
_BOOKKEEPING = {".hydra", "error.json", ".run_id", ".run.lock"}
RESOLVED_CONFIG = "resolved_config.yaml"  # in a run folder: the config train.py ran with, resolved


def discard_unused_run_dir(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but bookkeeping (Hydra's `.hydra/`, the log, error.json): a
    command refused for bad input leaves no folder that looks like a run. Empty parents (`<date>/`) go too.
    A folder with anything else in it (an earlier attempt's checkpoints, a result) stays."""
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name not in _BOOKKEEPING and entry.suffix != ".log":
            return
    shutil.rmtree(run_dir)
    for parent in list(run_dir.parents)[:3]:  # <date>/ (eval/), up to outputs/ or multirun/, while empty
        try:
            parent.rmdir()
        except OSError:
            break
        if parent.name in ("outputs", "multirun"):
            break


def check_output_folder(path: Path, setting: str) -> None:
    """A folder results can go to: not a file, not under one, and its nearest existing folder writable."""
    path = path.expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under a file ({existing})"
        raise ConfigError(f"{setting}={path} {where}. Fix: the path of a folder (new, or one to write into)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}={path}: {existing} is not writable here. Fix: a folder this user can write to")


class CheckOutputFolder(Callback):
    """Hydra callback: the run or sweep folder is checked before Hydra makes it (a file in the way, or a folder
    this user cannot write, would end in Hydra's traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with bad_input_exits():
            check_output_folder(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with bad_input_exits():
            check_output_folder(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
