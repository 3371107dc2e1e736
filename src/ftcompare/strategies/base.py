"""The LightningModule every strategy shares: forward, loss, metrics, optimizer and schedule, parameter counts.

A strategy subclass only says which parameters train (and checks its own settings in `check_config`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import AUROC, Accuracy, F1Score, MaxMetric, MetricCollection
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    get_linear_schedule_with_warmup,
)

from ftcompare.checkpointing import CheckpointContents
from ftcompare.data.datamodule import EXAMPLE
from ftcompare.errors import TrainingDiverged
from ftcompare.models import load_model, load_pretrained

log = logging.getLogger(__name__)


def linear_warmup_decay(optimizer: Optimizer, num_training_steps: int, warmup_ratio: float = 0.06) -> LRScheduler:
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to zero."""
    warmup = math.ceil(warmup_ratio * num_training_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, num_training_steps)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch without its labels and example indices: what the model takes."""
    return {k: v for k, v in batch.items() if k not in ("labels", EXAMPLE)}


class FineTuningStrategy(L.LightningModule):
    """Shared forward, loss, metrics, optimizer/schedule and parameter counts."""

    # Parameters frozen for the whole run stay out of checkpoints (a LoRA checkpoint is adapter + head); a
    # checkpoint is then loaded onto the base model named in the run's config, checked by a digest.
    saves_trainable_only: ClassVar[bool] = False
    # Later epochs reuse work of the first (frozen's feature cache): `make bench` then times a second epoch too.
    first_epoch_differs: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        model: dict[str, Any],
        label_names: list[str],
        optimizer: Callable[[Iterable[dict]], Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.name, self.model_cfg, self.label_names = name, dict(model), list(label_names)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        n = len(self.label_names)
        kind = {"task": "binary"} if n == 2 else {"task": "multiclass", "num_classes": n}
        scores = MetricCollection(
            {"acc": Accuracy(**kind), "f1": F1Score(**kind, average="macro"), "auroc": AUROC(**kind)}
        )
        self.train_acc = Accuracy(**kind)
        self.val_metrics = scores.clone(prefix="val/")
        self.test_metrics = scores.clone(prefix="test/")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints: a resumed run knows its best epoch so far
        self.checkpoint_contents = CheckpointContents(self.model_cfg["name_or_path"], self.saves_trainable_only)
        self.validated_at_step: int | None = None  # the step of the last validation (not the sanity check)
        # per split, the last evaluation's examples: index in the split, label and class probabilities, by index
        self.predictions: dict[str, dict[str, list]] = {}
        self._scored: list[tuple[torch.Tensor, ...]] = []

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Refuse settings of this strategy that cannot work (ConfigError), before anything loads."""

    # -- model -------------------------------------------------------------------------------------
    def load_classifier(self) -> PreTrainedModel:
        """The selected model with its native sequence-classification head, in train mode.

        `from_pretrained` returns eval mode and Lightning keeps a module's mode, so without this
        dropout would silently be off during training.
        """
        labels = len(self.label_names)
        model = self.load_pretrained(
            AutoModelForSequenceClassification,
            num_labels=labels,
            id2label=dict(enumerate(self.label_names)),
            label2id={name: i for i, name in enumerate(self.label_names)},
            ignore_mismatched_sizes=self.head_relabelled(labels),
        )
        return model.train()

    def head_relabelled(self, labels: int) -> bool:
        """A model saved with a classification head for another number of labels: its head is re-initialised for
        the data's labels (transformers refuses the mismatched weights otherwise)."""
        config = load_pretrained(
            AutoConfig, self.model_cfg["name_or_path"], self.model_cfg.get("trust_remote_code", False)
        )
        has_head = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
        relabelled = has_head and config.num_labels != labels
        if relabelled:
            log.info(
                "the model's classification head has %d labels, the data %d: a new head", config.num_labels, labels
            )
        return relabelled

    def load_pretrained(self, loader: Any, **kwargs: Any) -> PreTrainedModel:
        """The configured model; the checkpoint contents learn which parameters hold its loaded weights (not a
        missing one, nor a re-initialised head)."""
        model, info = load_model(loader, **self.model_cfg, **kwargs, output_loading_info=True)
        fresh = set(info["missing_keys"]) | {key for key, *_ in info.get("mismatched_keys", [])}
        self.checkpoint_contents.mark_pretrained(model.named_parameters(), fresh)
        return model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**model_inputs(batch)).logits

    def stage_steps(self, total_steps: int) -> list[int]:
        """The step from which each stage (set of trainable parameters) trains, one per stage, from 0: where
        training memory is tracked."""
        return [0]

    def enter_stage(self, stage: int) -> None:
        """Make trainable what trains in `stage` without a Trainer (the memory estimate); no-op: it never changes."""

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters right now."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    # -- optimisation --------------------------------------------------------------------------------
    @staticmethod
    def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], **group: Any) -> list[dict[str, Any]]:
        """Trainable params split so biases and norm weights (1-D) get no weight decay."""
        decay, no_decay = [], []
        for _, p in named_params:
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, **group}, {"params": no_decay, "weight_decay": 0.0, **group}]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.param_groups(self.named_parameters()))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, num_training_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer: Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Clip directly when no gradient scaler is in play (fp32, bf16): Lightning's mixed-precision
        plugin refuses any clipping with a fused optimizer, though only fp16's scaler needs that."""
        if not gradient_clip_val or getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            nn.utils.clip_grad_norm_(params, gradient_clip_val)

    # -- steps ---------------------------------------------------------------------------------------
    def _scores(self, probs: torch.Tensor) -> torch.Tensor:
        """What the metrics take from the class probabilities: the positive class's alone for two labels."""
        return probs[:, 1] if len(self.label_names) == 2 else probs

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        if not torch.isfinite(loss):
            lr = self.trainer.optimizers[0].defaults["lr"]
            raise TrainingDiverged(
                f"train/loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: training "
                f"diverged and was stopped. Fix: a lower optimizer.lr (this run: {lr:g}), "
                "gradient clipping on (trainer.gradient_clip_val=1.0, the default) or trainer.precision=32-true"
            )
        self.train_acc(self._scores(logits.detach().float().softmax(-1)), batch["labels"])
        # sync_dist: under DDP the mean over all processes' batches (a no-op on one device)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits), sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, stage: str) -> None:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        probs = logits.detach().float().softmax(-1)  # once: for the metrics and the per-example predictions
        metrics.update(self._scores(probs), batch["labels"])
        self._scored.append((batch[EXAMPLE].cpu(), batch["labels"].cpu(), probs.cpu()))
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=len(logits), sync_dist=True)
        # how many examples the figures rest on (a sliced run scores fewer than the split holds)
        self.log(f"{stage}/examples", float(len(logits)), on_epoch=True, reduce_fx="sum", sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_validation_epoch_start(self) -> None:
        self._scored = []

    on_test_epoch_start = on_validation_epoch_start

    def _collect_predictions(self, split: str) -> None:
        """The epoch's scored examples, from every DDP process, sorted by their index in the split."""
        scored = [torch.cat(parts) for parts in zip(*self._scored, strict=True)] if self._scored else []
        self._scored = []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shares: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shares, scored)
            scored = [torch.cat(parts) for parts in zip(*(s for s in shares if s), strict=True)]
        if not scored:
            return
        example, label, probs = scored
        order = example.argsort()
        self.predictions[split] = {
            "example": example[order].tolist(),
            "label": label[order].tolist(),
            "probs": probs[order].tolist(),
        }

    # torchmetrics' compute() already gathers all DDP processes' states; sync_dist=True only tells Lightning so
    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._collect_predictions("validation")
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=False, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.val_acc_best(values["val/acc"])
            self.validated_at_step = self.global_step
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._collect_predictions("test")
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()

    # -- checkpoints (see checkpointing.py) ------------------------------------------------------------
    def last_validation(self) -> dict[str, Any] | None:
        """The `val/*` epoch metrics of the last validation, its predictions and its step; None before the first."""
        if self.validated_at_step is None:
            return None
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        return {
            "global_step": self.validated_at_step,
            "metrics": metrics,
            "predictions": self.predictions.get("validation"),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_contents.save(self, checkpoint, self.last_validation())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_contents.load(self, checkpoint)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Restored at the first step, after whatever a resumed run drew before it (sanity check, loaders)."""
        self.checkpoint_contents.restore_rng()
