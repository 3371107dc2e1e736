"""Results are written atomically: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any


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
