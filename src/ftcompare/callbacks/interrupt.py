"""Ctrl-C, SIGTERM and SLURM's time-limit signal as a clean stop: finish the step, save a checkpoint to resume
from, say how (or let SLURM requeue the job, which resumes from it)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L

from ftcompare.errors import Interrupted
from ftcompare.resume import last_checkpoint

# the signal SLURM sends a submitit job before its time limit (submitit's `--signal`, SUBMITIT_PREEMPT_SIGNAL)
_SUBMITIT_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class GracefulInterrupt(L.Callback):
    """Ctrl-C once, or SIGTERM (`kill`, `timeout`, a cluster's time limit or preemption): the current step
    finishes, a checkpoint is saved, and the run stops with `Interrupted` (resume it with the same command
    and resume=true). Ctrl-C twice: it stops at once, and a resume starts from the last epoch's checkpoint.
    SIGTERM is noted by Lightning's own handler (`trainer.received_sigterm`), which this callback acts on
    before Lightning would end the process without a checkpoint.

    In a job of hydra/launcher=slurm, SLURM signals the job `signal_delay_s` before its time limit (USR2);
    submitit's handler requeues the job and exits at once, in the middle of the step. Here it runs after the
    step, once the checkpoint is saved, so the requeued job resumes from exactly there."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None
        self.requeue: Any = None  # submitit's time-limit handler, while this callback holds its signal
        self.time_limit = False

    @property
    def stopping(self) -> bool:
        """A stop was asked for and happens at the end of the current step."""
        return self.requested or self.time_limit

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise Interrupted(
                "stopped at once by a second Ctrl-C. Fix: run the same command with resume=true to continue "
                "from the last epoch's checkpoint"
            )
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    def _defer_requeue(self, signum: int, frame: Any) -> None:
        self.time_limit = True
        print(
            "\nSLURM's time-limit signal: finishing this step and saving a checkpoint, then requeued", file=sys.stderr
        )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = signal.signal(signal.SIGINT, self._request)
        handler = signal.getsignal(_SUBMITIT_SIGNAL) if _SUBMITIT_SIGNAL else None  # None: Windows
        if type(getattr(handler, "__self__", None)).__module__ == "submitit.core.job_environment":
            self.requeue = handler
            signal.signal(_SUBMITIT_SIGNAL, self._defer_requeue)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not (self.stopping or trainer.received_sigterm):
            return
        path = last_checkpoint(trainer) or Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        if self.time_limit and not self.requested:
            self.requeue(_SUBMITIT_SIGNAL, None)  # submitit: requeue the job, exit without a result
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
        if self.requeue is not None:
            signal.signal(_SUBMITIT_SIGNAL, self.requeue)
            self.requeue = None

    on_fit_end = on_exception = _restore_handler
