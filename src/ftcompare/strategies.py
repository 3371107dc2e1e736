"""The fine-tuning strategies. Each is a LightningModule; the base holds everything they share.

A strategy only says which parameters train and how: `full` trains everything, `frozen` trains an
MLP head on a frozen backbone's pooled output, `lora` trains peft LoRA adapters on the attention
query/value projections plus the head, `gradual` unfreezes encoder layers top-down on a schedule.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from peft import IA3Config, LoraConfig, TaskType, get_peft_model
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import AUROC, Accuracy, F1Score, MaxMetric, MetricCollection
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel, get_linear_schedule_with_warmup

from ftcompare.callbacks import GradualUnfreeze
from ftcompare.config import ConfigError
from ftcompare.feature_cache import FeatureCache, model_identity
from ftcompare.models import PooledClassifier, anatomy, load_model


def linear_warmup_decay(optimizer: Optimizer, num_training_steps: int, warmup_ratio: float = 0.06) -> LRScheduler:
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to zero."""
    warmup = math.ceil(warmup_ratio * num_training_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, num_training_steps)


class FineTuningStrategy(L.LightningModule):
    """Shared forward, loss, metrics, optimizer/schedule and parameter counts."""

    name: ClassVar[str]
    # Parameters frozen for the whole run stay out of checkpoints (a LoRA checkpoint is adapter + head); a
    # checkpoint is then loaded onto the base model named in the run's config, checked by a digest.
    saves_trainable_only: ClassVar[bool] = False

    def __init__(
        self,
        model: dict[str, Any],
        label_names: list[str],
        optimizer: Callable[[Iterable[dict]], Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.model_cfg, self.label_names = dict(model), list(label_names)
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
        self.rng_to_restore: dict[str, Any] | None = None
        self._frozen_digest: tuple[tuple[str, ...], str] | None = None
        self._pretrained: set[int] = set()  # ids of the parameters holding loaded (not newly initialised) weights

    # -- model -------------------------------------------------------------------------------------
    def load_classifier(self) -> PreTrainedModel:
        """The selected model with its native sequence-classification head, in train mode.

        `from_pretrained` returns eval mode and Lightning keeps a module's mode, so without this
        dropout would silently be off during training.
        """
        model = self.load_pretrained(
            AutoModelForSequenceClassification,
            num_labels=len(self.label_names),
            id2label=dict(enumerate(self.label_names)),
            label2id={name: i for i, name in enumerate(self.label_names)},
        )
        return model.train()

    def load_pretrained(self, loader: Any, **kwargs: Any) -> PreTrainedModel:
        """The configured model, remembering which parameters hold its loaded weights: only those can be
        left out of checkpoints (a new head, or a pooler the weights lack, is random and must be saved)."""
        model, info = load_model(loader, **self.model_cfg, **kwargs, output_loading_info=True)
        missing = set(info["missing_keys"])
        self._pretrained |= {id(p) for name, p in model.named_parameters() if name not in missing}
        return model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**_inputs(batch)).logits

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
    def _scores(self, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(-1)
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
        self.train_acc(self._scores(logits), batch["labels"])
        # sync_dist: under DDP the mean over all processes' batches (a no-op on one device)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits), sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, stage: str) -> None:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        metrics.update(self._scores(logits), batch["labels"])
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=len(logits), sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    # torchmetrics' compute() already gathers all DDP processes' states; sync_dist=True only tells Lightning so
    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=False, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.val_acc_best(values["val/acc"])
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()

    # -- checkpoints: trained parameters only where the rest stays pretrained; the random state -------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}  # resumed dropout draws as uninterrupted
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.saves_trainable_only:
            params = self.named_parameters()
            frozen = {name: p for name, p in params if not p.requires_grad and id(p) in self._pretrained}
            for name in frozen:
                checkpoint["state_dict"].pop(name, None)
            checkpoint["pretrained"] = {
                "model": self.model_cfg["name_or_path"],
                "names": sorted(frozen),
                "digest": self._digest(frozen),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.rng_to_restore = checkpoint.get("rng_states")
        kept = checkpoint.get("pretrained")
        if kept is None:
            return
        params = dict(self.named_parameters())
        current = {name: params[name] for name in kept["names"] if name in params}
        if len(current) != len(kept["names"]) or self._digest(current) != kept["digest"]:
            raise ConfigError(
                f"the checkpoint holds only trained parameters, to be put on the pretrained {kept['model']!r}, but "
                f"model.name_or_path={self.model_cfg['name_or_path']!r} loaded other weights. Fix: the model the run "
                "trained (its .hydra/config.yaml)"
            )
        checkpoint["state_dict"].update({name: p.detach() for name, p in current.items()})  # loads strictly

    def _digest(self, params: dict[str, torch.Tensor]) -> str:
        """SHA-256 over the parameters' names and bytes; cached, as frozen parameters do not change."""
        names = tuple(sorted(params))
        if self._frozen_digest is None or self._frozen_digest[0] != names:
            digest = hashlib.sha256()
            for name in names:
                digest.update(name.encode())
                digest.update(params[name].detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
            self._frozen_digest = (names, digest.hexdigest())
        return self._frozen_digest[1]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Restored at the first step, after whatever a resumed run drew before it (sanity check, loaders)."""
        if self.rng_to_restore:
            torch.set_rng_state(self.rng_to_restore["torch"])
            if "cuda" in self.rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self.rng_to_restore["cuda"])
            self.rng_to_restore = None


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


class FullFineTuning(FineTuningStrategy):
    """Every parameter trains."""

    name = "full"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()


class FrozenBackbone(FineTuningStrategy):
    """Backbone frozen in eval mode, run without a graph; only an MLP over its pooled output trains.

    With `cache_features` each example's pooled features are computed once (first epoch) and
    reused in every later epoch and validation; `cache_dir` keeps them across runs.
    """

    name = "frozen"
    saves_trainable_only = True

    def __init__(
        self,
        pooling: str = "mean",
        head_hidden_dims: tuple[int, ...] = (256,),
        head_dropout: float = 0.1,
        cache_features: bool = True,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        backbone = self.load_pretrained(AutoModel).requires_grad_(False).eval()
        self.model = PooledClassifier(backbone, len(self.label_names), pooling, tuple(head_hidden_dims), head_dropout)
        self.cache_features, self.cache_dir = cache_features, cache_dir
        self.cache: FeatureCache | None = None

    def setup(self, stage: str) -> None:
        """The cache is made here, once the precision (part of its identity) is known."""
        if self.cache_features and self.cache is None:
            identity = [model_identity(self.model_cfg["name_or_path"]), self.model.pooling, str(self.trainer.precision)]
            self.cache = FeatureCache(self.cache_dir, identity)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            if self.cache is None:
                return self.model.pool(**_inputs(batch))
            return self.cache.lookup(batch, lambda rows: self.model.pool(**_inputs(rows)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.head(self.features(batch))

    def on_train_end(self) -> None:
        if self.cache is not None:
            self.cache.save()

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Keep the backbone in eval mode (no dropout) whatever Lightning asks of the module."""
        super().train(mode)
        self.model.backbone.eval()
        return self


class LoRA(FineTuningStrategy):
    """peft LoRA on the attention query/value projections; base weights frozen; the head trains.

    `target_modules`: leaf or full module names, or `all-linear` for every Linear of the encoder layers.
    """

    name = "lora"
    saves_trainable_only = True

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.1,
        target_modules: list[str] | str | None = None,
        use_dora: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model = self.load_classifier()
        parts = anatomy(model)
        if target_modules == "all-linear":
            target_modules = parts.linears(model, lambda name: True)
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=list(target_modules or parts.query_value),
            use_dora=use_dora,
            modules_to_save=parts.head,  # e.g. DistilBERT's pre_classifier, BERT's pooler
        )
        self.model = get_peft_model(model, config)


class LoRAAllLinear(LoRA):
    """LoRA on every Linear of the encoder layers: attention and feed-forward."""

    name = "lora_all"

    def __init__(self, target_modules: list[str] | str | None = "all-linear", **kwargs: Any) -> None:
        super().__init__(target_modules=target_modules, **kwargs)


class DoRA(LoRA):
    """DoRA (peft `use_dora`): LoRA's direction update plus a trained magnitude per output feature."""

    name = "dora"

    def __init__(self, use_dora: bool = True, **kwargs: Any) -> None:
        super().__init__(use_dora=use_dora, **kwargs)


class IA3(FineTuningStrategy):
    """peft IA3: learned vectors rescale the attention keys and values and the input of the feed-forward
    down projection (module names found per architecture, e.g. DistilBERT's k_lin/v_lin/ffn.lin2); the head trains."""

    name = "ia3"
    saves_trainable_only = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        model = self.load_classifier()
        parts = anatomy(model)
        if parts.key_value is None:
            raise ConfigError(
                f"model_type={model.config.model_type!r}: no attention key/value projections found for IA3. "
                "Fix: another strategy, e.g. strategy=lora"
            )
        feedforward = parts.linears(model, lambda name: name == parts.ffn_output)
        config = IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=parts.linears(model, lambda name: name.rsplit(".", 1)[-1] in parts.key_value) + feedforward,
            feedforward_modules=feedforward,
            modules_to_save=parts.head,
        )
        self.model = get_peft_model(model, config)


class BitFit(FineTuningStrategy):
    """BitFit: only the bias terms (attention, feed-forward, LayerNorm) and the classification head train."""

    name = "bitfit"
    saves_trainable_only = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
        head = tuple(f"{name}." for name in anatomy(self.model).head)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.endswith(".bias") or name.startswith(head))


class GradualUnfreezing(FineTuningStrategy):
    """Head first, then encoder layers top-down every `unfreeze_every` epochs (a BaseFinetuning callback)."""

    name = "gradual"

    def __init__(self, unfreeze_every: int = 1, lr_decay: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = self.load_classifier()
        self.unfreeze = GradualUnfreeze(unfreeze_every, lr_decay)

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.unfreeze]
