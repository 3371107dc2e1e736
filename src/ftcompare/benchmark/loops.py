"""The two training loops `make bench` times on the same examples: ours, as `train.py` builds it, and Hugging
Face `Trainer`. Both train the module the strategy class builds, with the same batch size, max_length,
precision, learning rate and clipping."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import BaseFinetuning
from omegaconf import DictConfig
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from ftcompare import CONF_DIR
from ftcompare.benchmark.clock import LightningTicks, StepClock, TrainerTicks, achieved_flops, memory_from_here
from ftcompare.builders import build_datamodule, build_module, build_trainer
from ftcompare.callbacks import TrainingMemory
from ftcompare.report.paired import REFERENCE  # full fine-tuning: every weight trains, so MFU is defined
from ftcompare.resolvers import register_resolvers
from ftcompare.strategies import FineTuningStrategy, strategy_class


def in_first_stage(module: FineTuningStrategy) -> FineTuningStrategy:
    """The module with the parameters trainable that train at the start of our run (a BaseFinetuning callback's
    first stage applied: gradual's head alone), for loops that train it without Lightning's callbacks."""
    for callback in module.configure_callbacks():
        if isinstance(callback, BaseFinetuning):
            callback.freeze_before_training(module)
    return module


class TrainerModel(nn.Module):
    """A strategy's module as `Trainer` trains it: the same model with the same parameters trainable as at the
    start of our run (`in_first_stage`); forward returns the loss."""

    def __init__(self, module: FineTuningStrategy) -> None:
        super().__init__()
        self.module = in_first_stage(module)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        logits = self.module(batch)
        return SequenceClassifierOutput(loss=F.cross_entropy(logits.float(), labels), logits=logits)


@dataclass
class Bench:
    """Shared setup of one benchmark run: the composed config, the data, the device."""

    overrides: Sequence[str]
    strategies: Sequence[str]
    warmup: int = 3
    steps: int = 20
    eval_samples: int = 512
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ftc-bench-")))

    def __post_init__(self) -> None:
        self.base_cfg = self.compose(self.strategies[0])  # overrides may name keys of one strategy only
        self.datamodule = build_datamodule(self.base_cfg)
        self.datamodule.setup("fit")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        evaluation = self.datamodule.splits["validation"]
        self.eval_set = evaluation.select(range(min(self.eval_samples, len(evaluation))))

    def compose(self, strategy: str, *extra: str) -> DictConfig:
        register_resolvers()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(
                "train",
                overrides=[
                    f"strategy={strategy}",
                    f"paths.output_dir={self.workdir / strategy}",
                    *self.overrides,
                    *extra,
                ],
            )

    def describe(self, precision: str) -> str:
        cfg = self.base_cfg
        return (
            f"batch {cfg.data.batch_size}, max_length {cfg.data.max_length}, precision {precision}, "
            f"{self.warmup} warm-up + {self.steps} timed steps (a strategy whose later epochs reuse the first's work: "
            f"ours over its 2nd epoch), eval on {len(self.eval_set)} examples. "
            f"Overrides: {' '.join(self.overrides) or 'none'}."
        )

    def ours(self, strategy: str) -> dict[str, Any]:
        """Our loop as `train.py` builds it (callbacks, TensorBoard logger), without checkpoints or validation.

        A strategy whose first epoch differs (frozen's feature cache) runs two whole epochs: the first does the
        one-time work, the second shows what every later epoch costs.
        """
        two_epochs = strategy_class(strategy).first_epoch_differs
        cfg = self.compose(
            strategy,
            f"trainer.max_epochs={2 if two_epochs else 1}",
            f"trainer.limit_train_batches={'null' if two_epochs else self.warmup + self.steps}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "callbacks.model_checkpoint=null",
            "callbacks.progress_bar=null",
            "+trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        )
        if "head_only" in cfg.strategy:  # a staged strategy (gradual) stays in its first stage, as in Trainer's loop
            cfg.strategy.head_only = cfg.strategy.all_from = 1.0
        L.seed_everything(cfg.seed)
        clock = StepClock(self.device)
        evaluate = self.datamodule.eval_loader("validation", limit=self.eval_samples)  # as a run evaluates
        shared_collate = self.datamodule.collate
        self.datamodule.collate = clock.collator(shared_collate)
        try:
            memory = memory_from_here(self.device)
            module = build_module(cfg)
            trainer = build_trainer(cfg)
            ticks = LightningTicks(clock)
            trainer.callbacks.append(ticks)
            trainer.fit(module, datamodule=self.datamodule)
            peak = memory.above_start_mb()
            tracked = next((c.record for c in trainer.callbacks if isinstance(c, TrainingMemory)), None)
            trainer.limit_val_batches = 1.0  # fit ran without validation
            start = time.perf_counter()
            trainer.validate(module, dataloaders=evaluate, verbose=False)
            eval_rate = len(self.eval_set) / (time.perf_counter() - start)
        finally:
            self.datamodule.collate = shared_collate
        if two_epochs:
            first = ticks.epoch_ends[0]
            figures = {**clock.steady(first), "epoch1_samples_per_s": clock.steady(self.warmup, first)["samples_per_s"]}
        else:
            figures = clock.steady(self.warmup)
        return {
            **figures,
            **(achieved_flops(module.model, clock, self.warmup) if strategy == REFERENCE else {}),
            "peak_mb": peak,
            "tensor_mib": tracked["at_peak_mib"]["total"] if tracked else None,
            "eval_samples_per_s": eval_rate,
            "precision": str(trainer.precision),
        }

    def hf_trainer(self, strategy: str) -> dict[str, Any]:
        """`transformers.Trainer` set up as a user would (bf16 flag, dynamic padding, its default optimizer),
        training the module the strategy class builds (`TrainerModel`)."""
        # transformers' attention and torch's dropout, as users run them
        cfg = self.compose(strategy, "model.attn_implementation=sdpa", "model.fast_dropout=false")
        torch.manual_seed(cfg.seed)
        clock = StepClock(self.device)
        memory = memory_from_here(self.device)
        model = TrainerModel(build_module(cfg))
        args = TrainingArguments(
            output_dir=str(self.workdir / f"hf_{strategy}"),
            per_device_train_batch_size=cfg.data.batch_size,
            per_device_eval_batch_size=cfg.data.eval_batch_size,
            learning_rate=cfg.optimizer.lr,
            weight_decay=cfg.optimizer.weight_decay,
            max_steps=self.warmup + self.steps,
            warmup_steps=1,
            logging_steps=cfg.trainer.log_every_n_steps,
            bf16=str(cfg.trainer.precision).startswith("bf16"),
            use_cpu=self.device.type == "cpu",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=cfg.seed,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=self.datamodule.splits["train"],
            data_collator=clock.collator(self.datamodule.collate),
            callbacks=[TrainerTicks(clock)],
        )
        trainer.train()
        peak = memory.above_start_mb()
        trainer.data_collator = self.datamodule.collate
        start = time.perf_counter()
        trainer.evaluate(eval_dataset=self.eval_set)
        eval_rate = len(self.eval_set) / (time.perf_counter() - start)
        return {
            **clock.steady(self.warmup),
            **(achieved_flops(model.module.model, clock, self.warmup) if strategy == REFERENCE else {}),
            "peak_mb": peak,
            "eval_samples_per_s": eval_rate,
            "precision": "bf16" if args.bf16 else "fp32",
        }
