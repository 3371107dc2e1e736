"""Finding the run a command continues and the checkpoint it continues from.

`resume=true` (or `ckpt_path=last`) with the same command finds the newest earlier run (or sweep) of that
command, by its overrides, and continues it in the same folder from `checkpoints/last.ckpt`. What makes the
continuation exact travels in the checkpoint: the module's RNG state (`checkpointing.py`), the data position
(the datamodule's state), the cost totals (the cost monitor's state) and gradual unfreezing's groups.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from hydra.experimental.callback import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ftcompare.errors import ConfigError, RunInUse, bad_input_exits
from ftcompare.io import RESOLVED_CONFIG

log = logging.getLogger(__name__)
RESUME_KEYS = ("resume", "ckpt_path")
LOCK = ".run.lock"  # in a run folder while a process trains there
TRAINING_JOB = "train"  # hydra.job.name of train.py's runs: other tools' folders are never resumed
RUN_ID = ".run_id"  # in a run folder: the run's identity, kept when it resumes


def wants_resume(resume: bool | None, ckpt_path: str | None) -> bool:
    """resume=true and ckpt_path=last both mean: continue the last run of this command."""
    return bool(resume) or ckpt_path == "last"


def requeued() -> bool:
    """A SLURM job started again by a requeue (preemption, or a time limit with submitit's max_num_timeout):
    its run continues as with resume=true. Its folder is the same when Hydra's submitit launcher resubmits
    it, or when the command pins it (hydra.run.dir=outputs/slurm-${SLURM_JOB_ID})."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def resuming(cfg: DictConfig) -> bool:
    return wants_resume(cfg.get("resume"), cfg.get("ckpt_path")) or requeued()


def command_overrides(overrides: list[str]) -> list[str]:
    """A command's overrides minus the ones that only say whether to resume."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in RESUME_KEYS]


_RUN_DIRS: dict[tuple[str, str], str] = {}
_NOTHING_FOUND: set[Path] = set()  # folders run_dir made up because resume=true found no earlier run


def run_dir(root: str, stamp: str, resume: bool, ckpt_path: str | None, *, _root_: DictConfig) -> str:
    """The `${ftc.run_dir:...}` resolver: `root/stamp`, or with resume=true the newest earlier folder of the
    same command (a run's `.hydra/overrides.yaml` or a sweep's `multirun.yaml`)."""
    if not wants_resume(resume, ckpt_path):
        return f"{root}/{stamp}"
    key = (root, stamp)  # a sweep's jobs resolve its folder again, with their own overrides: same answer
    if key not in _RUN_DIRS:
        found = _previous_dir(root, command_overrides(list(_root_.hydra.overrides.task)))
        if found is None:  # Hydra cannot show an error raised here: the run refuses itself (check_resumable)
            found = f"{root}/{stamp}"
            _NOTHING_FOUND.add(Path(found).resolve())
        _RUN_DIRS[key] = found
    return _RUN_DIRS[key]


# what makes a run the run it is: resume=true into a folder given by hand continues it only if these agree
RUN_IDENTITY = (
    "strategy.name",
    "model.name_or_path",
    "data.source",
    "data.train_size",
    "data.val_size",
    "data.test_size",
    "data.train_subset",
    "data.max_length",
    "data.batch_size",
    "optimizer.lr",
    "trainer.max_epochs",
    "seed",
)


def check_resumable(cfg: DictConfig) -> None:
    """resume=true must have found an earlier run of the same command to continue."""
    output_dir = Path(cfg.paths.output_dir).resolve()
    if resuming(cfg) and _NOTHING_FOUND & {output_dir, *output_dir.parents}:
        raise ConfigError(
            "resume=true: no earlier train.py run of this command (the same overrides, resume=true aside) under "
            "outputs/ or multirun/. Fix: drop resume=true to start a new run, or repeat the overrides of the run "
            "to continue"
        )


def check_given_folder(run_dir: Path, config: DictConfig) -> None:
    """resume=true into a folder given by hand (hydra.run.dir=...): it must hold a train.py run with the same
    settings (RUN_IDENTITY); anything else is refused, before a file is written there."""
    saved = run_dir / RESOLVED_CONFIG
    if not saved.is_file():
        raise ConfigError(
            f"resume=true: {run_dir} holds no train.py run to continue (no {RESOLVED_CONFIG}). Fix: drop "
            "resume=true to start a new run there, or set hydra.run.dir to the folder of the run to continue"
        )
    before = OmegaConf.load(saved)
    differing = [
        f"{key}={_value(before, key)} there, {_value(config, key)} here"
        for key in RUN_IDENTITY
        if _value(before, key) != _value(config, key)
    ]
    if differing:
        raise ConfigError(
            f"resume=true: {run_dir} holds a run of other settings ({'; '.join(differing)}). Fix: repeat that "
            f"run's settings (its {RESOLVED_CONFIG}), or drop resume=true to start a new run in a new folder"
        )


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class CheckResumeFolder(Callback):
    """Hydra callback: `resume=true hydra.run.dir=<folder>` is checked before Hydra writes into the folder
    (its `.hydra/`, the log), so a refused command leaves the folder as it was. A folder found by the search
    (no hydra.run.dir) and a SLURM restart need no check here."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name != TRAINING_JOB or requeued():
            return
        if not wants_resume(config.get("resume"), config.get("ckpt_path")):
            return
        run_dir = Path(config.hydra.run.dir).resolve()  # resolving ${ftc.run_dir:...} runs the search
        if run_dir in _NOTHING_FOUND or run_dir in {Path(d).resolve() for d in _RUN_DIRS.values()}:
            return
        with bad_input_exits():
            check_given_folder(run_dir, config)


def _previous_dir(root: str, wanted: list[str]) -> str | None:
    """The newest run (`.hydra/`) or sweep (`multirun.yaml`) folder of train.py with these overrides."""
    records = [*Path(root).glob("*/*/.hydra/hydra.yaml"), *Path(root).glob("*/*/multirun.yaml")]
    for record in sorted(records, key=lambda r: r.relative_to(root).parts[:2], reverse=True):
        hydra_cfg = OmegaConf.load(record).hydra
        if hydra_cfg.job.name == TRAINING_JOB and set(command_overrides(list(hydra_cfg.overrides.task))) == set(wanted):
            return "/".join([root, *record.relative_to(root).parts[:2]])
    return None


def run_id(run_dir: str | Path) -> str:
    """The run's identity (8 hex digits): made the first time a run folder is used, the same for every
    attempt of a resumed run. It is in metrics.json, error.json and the TensorBoard run's name."""
    path = Path(run_dir) / RUN_ID
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError), open(path, "x") as f:  # DDP: the first process here makes it
        f.write(secrets.token_hex(4))
    return path.read_text().strip()


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the run folder's lock, if that process still runs (on this host; a lock from another host
    cannot be checked from here and counts as held)."""
    try:
        holder = json.loads((run_dir / LOCK).read_text())
    except (OSError, ValueError):
        return None
    if holder.get("host") != platform.node():
        return holder
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return None  # stale: its process is gone
    except PermissionError:
        pass  # alive, another user's
    return holder


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Held while this process trains in `run_dir`: a second process for the same folder (resume=true of a
    run that is still going) is refused with RunInUse, before it writes anything there."""
    lock = run_dir / LOCK
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": platform.node(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = lock_holder(run_dir)
            if holder is not None:
                raise RunInUse(
                    f"{run_dir} is in use by a run that is still going (pid {holder['pid']} on {holder['host']}, "
                    f"started {time.ctime(holder['started'])}). Fix: wait for it to end, or stop it (kill "
                    f"{holder['pid']}) and run the same command with resume=true; if that process is gone, "
                    f"delete {lock}"
                ) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        break
    else:
        raise RunInUse(f"{run_dir}: another process took its lock at the same time. Fix: run one of them only")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(lock.read_text())["pid"] == mine["pid"]:
                lock.unlink()


def last_checkpoint(trainer: L.Trainer) -> Path | None:
    """Where the newest-epoch checkpoint goes (the ModelCheckpoint without a monitor): what a run resumes from."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
    return None


def resume_from(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """The checkpoint `fit` continues from: the file in ckpt_path, or with resume=true this run's last.ckpt."""
    if cfg.get("ckpt_path") not in (None, "last"):
        return str(cfg.ckpt_path)
    if not resuming(cfg):
        return None
    last = last_checkpoint(trainer)
    if last is None:
        raise ConfigError(
            "resume=true needs the checkpoint it resumes from. Fix: callbacks=default (callbacks.last_checkpoint)"
        )
    if not last.is_file():
        log.warning("resume=true: no %s yet, starting from the beginning", last)
        return None
    log.info("resuming from %s", last)
    return str(last)
