"""Test-only callback (loaded by subprocesses as `tests.helpers.pause.PauseAt`): pauses a run once, at a given
step, so a test can kill or interrupt it there; the marker file holds the pid of the process that trains, and
makes the pause happen only once, so the resumed run can be the very same command. With `until_sigterm` the
pause also ends when SIGTERM (or SLURM's time-limit signal) arrives, so a test that needs a long pause does not
wait it out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig


class PauseAt(L.Callback):
    def __init__(
        self, step: int, marker: str, seconds: float = 120.0, job: int | None = None, until_sigterm: bool = False
    ) -> None:
        self.step, self.marker, self.seconds, self.job = step, Path(marker), seconds, job
        self.until_sigterm = until_sigterm

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        if self.job is not None and HydraConfig.get().job.num != self.job:
            return
        self.marker.write_text(str(os.getpid()))  # the training process: a joblib worker in such a sweep
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not (self.until_sigterm and self._stopping(trainer)):
            time.sleep(0.05)

    @staticmethod
    def _stopping(trainer: L.Trainer) -> bool:
        return trainer.received_sigterm or any(getattr(c, "stopping", False) for c in trainer.callbacks)
