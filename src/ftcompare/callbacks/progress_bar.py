"""Lightning's tqdm progress bar, right after a mid-epoch resume too."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """`TQDMProgressBar` that also sets up the bar of an epoch resumed mid-way (Ctrl-C, SIGTERM, then
    resume=true). Lightning skips `on_train_epoch_start` on such a restart, so its own bar would show
    `Training: 120/?` with a rate counted from step 0 (Lightning issue #20603): here it shows
    `Epoch 0: 120/250`, and the rate covers only the batches this process trains."""

    _epoch_set_up = False  # whether this epoch's bar got its total and description

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_set_up = True

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._epoch_set_up:
            return
        self.on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.initial = bar.n = batch_idx  # the batches done before the restart: no part of this process's rate
        bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._epoch_set_up = False
