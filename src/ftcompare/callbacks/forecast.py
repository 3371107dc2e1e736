"""A forecast before the wait: after the first few steps, how long the whole run will take, and the quicker options."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from ftcompare.resolvers import sweep_overrides

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """`2 h 17 min`, `14 min`, `40 s`."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class Forecast(L.Callback):
    """Logs the estimated time of the whole fit once `after_steps` training steps are timed (the first step,
    which pays one-time costs, is left out): the steps still to run at the mean step time so far, plus every
    validation and the test at the time of the sanity check's last batch (not counted when it is switched off)."""

    def __init__(self, after_steps: int = 5) -> None:
        self.after_steps = after_steps
        self.step_times: list[float] = []
        self.eval_batch_time: float | None = None
        self.done = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_start = time.perf_counter()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """The sanity check's last batch times an evaluation batch: the first pays the warm-up (a GPU's most)."""
        if trainer.sanity_checking:
            self.eval_batch_time = time.perf_counter() - self._eval_start

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.done:
            return
        self.step_times.append(time.perf_counter() - self._step_start)
        if len(self.step_times) <= self.after_steps:  # the first of them is left out
            return
        self.done = True
        step = sum(self.step_times[1:]) / self.after_steps
        total_steps = int(trainer.estimated_stepping_batches)
        timed_steps, epochs_left = total_steps, (trainer.max_epochs or 1) - trainer.current_epoch
        how, note = "about", ""
        if getattr(pl_module, "first_epoch_differs", False):  # frozen: later epochs reuse the first's features
            timed_steps = total_steps // (trainer.max_epochs or 1) * (trainer.current_epoch + 1)
            epochs_left, note = 1, "; the later epochs reuse its work and take seconds"
        elif len(getattr(pl_module, "stage_steps", lambda _: [0])(total_steps)) > 1:  # gradual: timed on the head
            how, note = "at least", "; later stages train more layers, each step slower"
        seconds = (timed_steps - trainer.global_step) * step
        evaluation = "validation and test not timed (no sanity check)"
        if self.eval_batch_time is not None:
            # each epoch's validation (the best checkpoint's is reused, not run again), then the test
            batches = epochs_left * sum(trainer.num_val_batches) + _test_batches(trainer)
            seconds += batches * self.eval_batch_time
            evaluation = f"{batches} evaluation batches at {self.eval_batch_time:.2g} s"
        sliced = trainer.limit_train_batches != 1.0 or trainer.fast_dev_run  # a look already: no debug=limit
        options = [] if sliced else ["debug=limit for a look at a few batches"]
        if trainer.strategy.root_device.type == "cpu":
            options.append("a GPU (trainer.accelerator=gpu)")  # not attention dropout 0.0: at most 8% (results.md)
        quicker = f". Quicker: {' or '.join(options)}" if options else ""
        log.info(
            "forecast: this run ends in %s %s (%d of %d training steps left at %.3g s, %s%s)%s",
            how,
            duration(seconds),
            timed_steps - trainer.global_step,
            timed_steps,
            step,
            evaluation,
            note,
            quicker,
        )
        position = sweep_position()
        if position is not None and position[0] < position[1]:
            job, jobs = position
            whole_run = time.perf_counter() - self._fit_start + seconds
            at_once = min(parallel_jobs(), jobs - job + 1)  # this job already shares the machine: its time shows it
            log.info(
                "forecast: this is job %d of %d; the %d after it take about %s more if each takes as long as this "
                "one%s (frozen runs take far less)",
                job,
                jobs,
                jobs - job,
                duration((jobs - job) * whole_run / at_once),
                f", {at_once} at a time" if at_once > 1 else "",
            )


def parallel_jobs() -> int:
    """How many jobs of this sweep run at the same time: the joblib launcher's `n_jobs` (-1: every core), else 1."""
    n_jobs = HydraConfig.get().launcher.get("n_jobs") if HydraConfig.initialized() else None
    if not n_jobs:
        return 1
    return max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1) + 1 + n_jobs)


def sweep_position() -> tuple[int, int] | None:
    """(this job's number counting from 1, the sweep's number of jobs) in a Hydra multirun, from the sweep's
    `multirun.yaml`: the product of the swept values (command line and `hydra.sweeper.params`), or an Optuna
    search's `n_trials`. None outside a sweep, or when the count cannot be known."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if "n_trials" in sweeper:  # a search (Optuna): its number of trials
        return hydra_cfg.job.num + 1, int(sweeper.n_trials)
    overrides = sweep_overrides(hydra_cfg.sweep.dir)
    if overrides is None:
        return None
    jobs = math.prod(len(list(o.sweep_iterator())) if o.is_sweep_override() else 1 for o in overrides)
    return hydra_cfg.job.num + 1, jobs


def _test_batches(trainer: L.Trainer) -> int:
    """Test batches of the datamodule's test split, as `limit_test_batches` cuts them."""
    loader = trainer.datamodule.test_dataloader() if trainer.datamodule is not None else None
    if loader is None:
        return 0
    limit = trainer.limit_test_batches
    return (
        len(loader)
        if limit is None
        else min(len(loader), int(limit if isinstance(limit, int) else limit * len(loader)))
    )
