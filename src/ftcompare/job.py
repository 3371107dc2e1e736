"""One Hydra job: train, or say in one line why not, record it in `error.json`, exit with a code that says so."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ftcompare.console import quiet_libraries
from ftcompare.errors import ConfigError, Interrupted, RunInUse, TrainingDiverged, first_line
from ftcompare.io import discard_unused_run_dir, write_json
from ftcompare.resume import resuming, run_id, run_lock
from ftcompare.training import train

log = logging.getLogger(__name__)
_TERMINATED_OUTSIDE_A_STEP = (
    "terminated (SIGTERM) outside a training step, no checkpoint saved. Fix: the same command with resume=true "
    "continues from the last epoch's checkpoint, if the run got that far"
)
_INTERRUPTED_OUTSIDE_A_STEP = (
    "interrupted outside a training step, no checkpoint saved. Fix: the same command with resume=true "
    "continues from the last epoch's checkpoint, if the run got that far"
)


def run(cfg: DictConfig) -> float:
    """What `train.py` runs; returns the best val accuracy (what sweepers maximise).

    In a sweep a failed job returns NaN so the others still run (the report lists it as failed);
    alone it exits non-zero: 2 for bad input, 1 for a failed run, 130 after Ctrl-C and 143 after SIGTERM
    (either stops a sweep too). With resume=true a job that already finished is not run again, and a
    folder another process still trains in is refused without writing to it.
    """
    quiet_libraries(cfg.get("verbose", False))
    output_dir = Path(cfg.paths.output_dir)
    metrics = output_dir / "metrics.json"
    if resuming(cfg) and metrics.is_file():
        log.info("already finished, not run again: %s", metrics)
        return json.loads(metrics.read_text())["val"]["val/acc"]
    try:
        with run_lock(output_dir) if rank_zero_only.rank == 0 else contextlib.nullcontext():
            return _run(cfg, output_dir)
    except RunInUse as err:
        _say(str(err))
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(2) from None


def _say(message: str, exc_info: bool = False) -> None:
    """One `error: ...` line on stderr, and in the job's log file (not again on the console)."""
    log.error("error: %s", message, exc_info=exc_info, extra={"file_only": True})
    print(f"error: {message}", file=sys.stderr)


def _run(cfg: DictConfig, output_dir: Path) -> float:
    """Train, or record why not in `error.json` (and say it in one line)."""
    error_file = output_dir / "error.json"
    error_file.unlink(missing_ok=True)  # from an earlier attempt of a resumed run
    try:
        return train(cfg)["val"]["val/acc"]
    except (Exception, KeyboardInterrupt, SIGTERMException) as err:
        status, code, message, expected = _classify(err)
        trace = None if expected else traceback.format_exc()
        if rank_zero_only.rank == 0:  # DDP: every process fails alike; one writes
            record = {"run_id": run_id(output_dir), "status": status, "error": message, "type": type(err).__name__}
            write_json(error_file, {**record, "traceback": trace})
        _say(message, exc_info=not expected)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if status == "failed" and in_sweep:
            return float("nan")  # error.json stays: the sweep's report lists the job as failed
        if code == 2 and HydraConfig.initialized():
            discard_unused_run_dir(output_dir)  # refused before it started: no folder that looks like a run
        raise SystemExit(code) from None


def _classify(err: BaseException) -> tuple[str, int, str, bool]:
    """(status, exit code, one-line message, expected) of an exception that ended a run; only an
    unexpected one (a bug, most likely) gets its traceback recorded."""
    if isinstance(err, ConfigError):
        return "failed", 2, str(err), True
    if isinstance(err, Interrupted):
        return "interrupted", err.exit_code, str(err), True
    if isinstance(err, SIGTERMException):
        return "interrupted", 128 + signal.SIGTERM, _TERMINATED_OUTSIDE_A_STEP, True
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", 130, _INTERRUPTED_OUTSIDE_A_STEP, True
    if isinstance(err, TrainingDiverged):
        return "failed", 1, str(err), True
    if isinstance(err, torch.OutOfMemoryError):
        return "failed", 1, f"out of memory ({first_line(err)}). Fix: a lower data.batch_size", True
    message = f"{type(err).__name__}: {first_line(err)} (traceback in error.json and the job's log)"
    return "failed", 1, message, False
