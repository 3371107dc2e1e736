"""Ctrl-C and SIGTERM as a clean stop: finish the step, save a checkpoint to resume from, say how."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L

from ftcompare.errors import Interrupted
from ftcompare.resume import last_checkpoint


class GracefulInterrupt(L.Callback):
    """Ctrl-C once, or SIGTERM (`kill`, `timeout`, a cluster's time limit or preemption): the current step
    finishes, a checkpoint is saved, and the run stops with `Interrupted` (resume it with the same command
    and resume=true). Ctrl-C twice: it stops at once, and a resume starts from the last epoch's checkpoint.
    SIGTERM is noted by Lightning's own handler (`trainer.received_sigterm`), which this callback acts on
    before Lightning would end the process without a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise Interrupted(
                "stopped at once by a second Ctrl-C. Fix: run the same command with resume=true to continue "
                "from the last epoch's checkpoint"
            )
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._request)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not (self.requested or trainer.received_sigterm):
            return
        path = last_checkpoint(trainer) or Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        how, code = ("interrupted", 130) if self.requested else ("terminated (SIGTERM)", 128 + signal.SIGTERM)
        raise Interrupted(
            f"{how} in epoch {trainer.current_epoch} after step {trainer.global_step}; checkpoint saved to "
            f"{path}. Fix: run the same command with resume=true to continue",
            exit_code=code,
        )

    def _restore_handler(self, *args: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    on_fit_end = on_exception = _restore_handler
