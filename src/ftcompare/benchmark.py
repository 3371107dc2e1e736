"""`make bench`: our Lightning training loop against Hugging Face `Trainer` on the same examples.

Per strategy, both train the same model on the same tokenised split with the same batch size,
max_length, precision, learning rate and clipping. Steady-state throughput is measured between
the end of the last warm-up step and the end of the last step, so data loading, logging and
callbacks count, start-up does not. Memory is the peak above the level before the model was
built (CPU: resident set size; GPU: allocated memory). Full fine-tuning's achieved FLOP/s is set
against the bf16 and fp32 matmul rates measured in the same process.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import psutil
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from peft import LoraConfig, TaskType, get_peft_model
from torch import nn
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ftcompare.callbacks import PeakMemory
from ftcompare.config import embedded_model_path, register_resolvers
from ftcompare.data import TextClassificationDataModule
from ftcompare.models import anatomy, load_model
from ftcompare.reporting import write_atomic
from ftcompare.training import _instantiate, build_module, build_trainer

STRATEGIES = ("full", "frozen", "lora", "gradual")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


# -- measuring ---------------------------------------------------------------------------------------
def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of the fastest of `reps` n x n x n matmuls: the machine's practical ceiling for model
    compute (the best, because on a shared machine the mean moves with the neighbours' load)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops(model: PreTrainedModel, batch: int, length: int) -> float:
    """Forward + backward FLOPs of one full fine-tuning step: 3x the forward's matmuls (encoder
    linear layers 2*tokens*weights, attention scores and mixing 4*batch*length^2*hidden per layer)."""
    layers = anatomy(model).layers
    weights = sum(m.weight.numel() for m in layers.modules() if isinstance(m, nn.Linear))
    hidden = model.config.hidden_size
    forward = 2 * batch * length * weights + 4 * batch * length**2 * hidden * len(layers)
    return 3.0 * forward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepClock:
    """Wall time at the end of each optimizer step, with the batch each step consumed.

    Batches are queued by the collator and taken off in order at each step end, so a loop that
    fetches one batch ahead (Lightning does) is timed correctly.
    """

    device: torch.device
    pending: list[tuple[int, int, int]] = field(default_factory=list)  # (samples, tokens, padded length)
    steps: list[tuple[float, int, int, int]] = field(default_factory=list)

    def collator(self, collate: Callable[[list], dict]) -> Callable[[list], dict]:
        def timed_collate(features: list) -> dict:
            batch = collate(features)
            mask = batch["attention_mask"]
            self.pending.append((len(mask), int(mask.sum()), mask.shape[1]))
            return batch

        return timed_collate

    def tick(self) -> None:
        _sync(self.device)
        self.steps.append((time.perf_counter(), *self.pending.pop(0)))

    def steady(self, warmup: int, end: int | None = None) -> dict[str, float]:
        """Throughput over steps warmup..end (0-based), timed from the end of step warmup-1."""
        window = self.steps[warmup:end]
        if warmup < 1 or not window:
            raise ValueError(f"need at least one warm-up and one timed step, got {len(self.steps)} steps")
        seconds = window[-1][0] - self.steps[warmup - 1][0]
        samples, tokens = sum(s[1] for s in window), sum(s[2] for s in window)
        return {
            "samples_per_s": samples / seconds,
            "tokens_per_s": tokens / seconds,
            "step_ms": 1000 * seconds / len(window),
            "timed_steps": len(window),
        }


class _LightningTicks(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock, self.epoch_ends = clock, []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.clock.tick()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_ends.append(len(self.clock.steps))


class _TrainerTicks(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.clock.tick()


def memory_from_here(device: torch.device) -> PeakMemory:
    """A peak-memory probe whose `above_start_mb` is what the code after this call added."""
    memory = PeakMemory(device)
    memory.reset()
    return memory


# -- the two loops -------------------------------------------------------------------------------------
@dataclass
class Bench:
    """Shared setup of one benchmark run: the composed config, the data, the device."""

    overrides: Sequence[str]
    strategies: Sequence[str] = STRATEGIES
    warmup: int = 3
    steps: int = 20
    eval_samples: int = 512
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ftc-bench-")))

    def __post_init__(self) -> None:
        self.base_cfg = self.compose(self.strategies[0])  # overrides may name keys of one strategy only
        self.datamodule: TextClassificationDataModule = _instantiate(self.base_cfg.data, _convert_="all")
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

    def ours(self, strategy: str) -> dict[str, Any]:
        """Our loop as `train.py` builds it (callbacks, TensorBoard logger), without checkpoints or validation.

        Frozen runs two whole epochs: the first computes the backbone features, the second shows
        what every later epoch costs.
        """
        epochs = 2 if strategy == "frozen" else 1
        limit = "null" if strategy == "frozen" else self.warmup + self.steps
        cfg = self.compose(
            strategy,
            f"trainer.max_epochs={epochs}",
            f"trainer.limit_train_batches={limit}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "callbacks.model_checkpoint=null",
            "callbacks.progress_bar=null",
            "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false",
        )
        L.seed_everything(cfg.seed)
        clock = StepClock(self.device)
        shared_collate = self.datamodule.collate
        self.datamodule.collate = clock.collator(shared_collate)
        try:
            memory = memory_from_here(self.device)
            module = build_module(cfg)
            trainer = build_trainer(cfg)
            ticks = _LightningTicks(clock)
            trainer.callbacks.append(ticks)
            trainer.fit(module, datamodule=self.datamodule)
            peak = memory.above_start_mb()
            evaluate = DataLoader(
                self.eval_set.with_format("torch"),
                batch_size=cfg.data.eval_batch_size,
                collate_fn=shared_collate,
            )
            trainer.limit_val_batches = 1.0  # fit ran without validation
            start = time.perf_counter()
            trainer.validate(module, dataloaders=evaluate, verbose=False)
            eval_rate = len(self.eval_set) / (time.perf_counter() - start)
        finally:
            self.datamodule.collate = shared_collate
        if strategy == "frozen":
            first = ticks.epoch_ends[0]
            figures = {**clock.steady(first), "epoch1_samples_per_s": clock.steady(self.warmup, first)["samples_per_s"]}
        else:
            figures = clock.steady(self.warmup)
        return {
            **figures,
            **(_achieved_flops(module.model, clock, self.warmup) if strategy == "full" else {}),
            "peak_mb": peak,
            "eval_samples_per_s": eval_rate,
            "precision": str(trainer.precision),
        }

    def hf_trainer(self, strategy: str) -> dict[str, Any]:
        """`transformers.Trainer` set up as a user would: bf16 flag, dynamic padding, peft for LoRA,
        `requires_grad=False` on the base for frozen, and on everything below the head for
        gradual (its first stage, which is what `ours` times for gradual too)."""
        cfg = self.compose(strategy)
        torch.manual_seed(cfg.seed)
        clock = StepClock(self.device)
        memory = memory_from_here(self.device)
        model = self._hf_model(cfg, strategy)
        precision = str(cfg.trainer.precision)
        args = TrainingArguments(
            output_dir=str(self.workdir / f"hf_{strategy}"),
            per_device_train_batch_size=cfg.data.batch_size,
            per_device_eval_batch_size=cfg.data.eval_batch_size,
            learning_rate=cfg.optimizer.lr,
            weight_decay=cfg.optimizer.weight_decay,
            max_steps=self.warmup + self.steps,
            warmup_steps=1,
            logging_steps=cfg.trainer.log_every_n_steps,
            bf16=precision.startswith("bf16"),
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
            callbacks=[_TrainerTicks(clock)],
        )
        trainer.train()
        peak = memory.above_start_mb()
        trainer.data_collator = self.datamodule.collate
        start = time.perf_counter()
        trainer.evaluate(eval_dataset=self.eval_set)
        eval_rate = len(self.eval_set) / (time.perf_counter() - start)
        return {
            **clock.steady(self.warmup),
            **(_achieved_flops(model, clock, self.warmup) if strategy == "full" else {}),
            "peak_mb": peak,
            "eval_samples_per_s": eval_rate,
            "precision": "bf16" if args.bf16 else "fp32",
        }

    def _hf_model(self, cfg: DictConfig, strategy: str) -> PreTrainedModel:
        labels = list(cfg.data.label_names)
        model = load_model(
            AutoModelForSequenceClassification,
            cfg.model.name_or_path,
            cfg.model.get("attention_dropout"),
            num_labels=len(labels),
        )
        parts = anatomy(model)
        if strategy == "lora":
            s = cfg.strategy
            config = LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=s.r,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=list(s.target_modules or parts.query_value),
                modules_to_save=parts.head,
            )
            return get_peft_model(model, config)
        if strategy == "frozen":
            model.base_model.requires_grad_(False)
        if strategy == "gradual":
            parts.embeddings.requires_grad_(False)
            parts.layers.requires_grad_(False)
        return model


def _achieved_flops(model: PreTrainedModel, clock: StepClock, warmup: int) -> dict[str, float]:
    """Model FLOP/s of full fine-tuning over the timed steps, from each batch's padded shape."""
    flops = sum(training_flops(model, samples, length) for _, samples, _, length in clock.steps[warmup:])
    return {"flops_per_s": flops / (clock.steps[-1][0] - clock.steps[warmup - 1][0])}


# -- the table -----------------------------------------------------------------------------------------
def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPU threads, torch {torch.__version__}"


def _fmt(value: Any) -> str:
    """Three significant figures, no exponent."""
    if not isinstance(value, float) or value != value:
        return "" if value is None or value != value else str(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rows: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    records = []
    for strategy, run in rows.items():
        ours, hf = run["ours"], run.get("trainer", {})
        records.append(
            {
                "strategy": strategy,
                "ours samples/s": ours["samples_per_s"],
                "Trainer samples/s": hf.get("samples_per_s"),
                "ours / Trainer": ours["samples_per_s"] / hf["samples_per_s"] if hf else None,
                "ours step ms": ours["step_ms"],
                "Trainer step ms": hf.get("step_ms"),
                "ours tokens/s": ours["tokens_per_s"],
                "Trainer tokens/s": hf.get("tokens_per_s"),
                "ours peak MiB": ours["peak_mb"],
                "Trainer peak MiB": hf.get("peak_mb"),
                "ours eval samples/s": ours["eval_samples_per_s"],
                "Trainer eval samples/s": hf.get("eval_samples_per_s"),
            }
        )
    return pd.DataFrame.from_records(records).set_index("strategy")


def _markdown(frame: pd.DataFrame) -> str:
    return frame.map(_fmt).to_markdown(colalign=["left"] + ["right"] * len(frame.columns), disable_numparse=True)


def _model_name(name_or_path: str) -> str:
    return "all-MiniLM-L6-v2 (embedded)" if name_or_path == embedded_model_path() else name_or_path


def render(rows: dict[str, dict[str, dict[str, Any]]], rates: dict[str, float], bench: Bench) -> str:
    cfg = bench.base_cfg
    lines = [
        "# Training throughput: ours vs Hugging Face Trainer",
        "",
        f"Machine: {machine()}. Model `{_model_name(str(cfg.model.name_or_path))}`, batch {cfg.data.batch_size}, "
        f"max_length {cfg.data.max_length}, precision {next(iter(rows.values()))['ours']['precision']}, "
        f"{bench.warmup} warm-up + {bench.steps} timed steps (frozen: ours over its 2nd epoch), "
        f"eval on {len(bench.eval_set)} examples. Overrides: {' '.join(bench.overrides) or 'none'}.",
        "",
        _markdown(table(rows)),
        "",
        "Peak MiB: "
        + ("allocated GPU memory" if bench.device.type == "cuda" else "resident memory")
        + " above the level before the model was built.",
    ]
    if "frozen" in rows:
        frozen = rows["frozen"]["ours"]
        lines.append(
            f"Frozen, ours: epoch 1 (features computed) {frozen['epoch1_samples_per_s']:.3g} samples/s, "
            f"later epochs {frozen['samples_per_s']:.4g} samples/s."
        )
        if "full" in rows:
            ratio = frozen["samples_per_s"] / rows["full"]["ours"]["samples_per_s"]
            lines.append(f"A frozen epoch after the first is {ratio:.0f}x faster than a full fine-tuning epoch.")
    lines.append(
        f"Matmul 2048^3 on this machine: bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s,"
        f" fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s."
    )
    if "full" in rows:
        for who in ("ours", "trainer"):
            if who in rows["full"]:
                achieved = rows["full"][who]["flops_per_s"]
                lines.append(
                    f"Full fine-tuning, {who}: {achieved / 1e9:.0f} GFLOP/s achieved = "
                    f"{100 * achieved / rates['bf16']:.1f}% of the bf16 and "
                    f"{100 * achieved / rates['fp32']:.0f}% of the fp32 matmul rate (model FLOPs utilisation)."
                )
    return "\n".join(lines) + "\n"


def _measure(bench: Bench, strategy: str, loop: str) -> dict[str, Any]:
    return bench.ours(strategy) if loop == "ours" else bench.hf_trainer(strategy)


def run(
    overrides: Sequence[str],
    strategies: Sequence[str] = STRATEGIES,
    warmup: int = 3,
    steps: int = 20,
    eval_samples: int = 512,
    with_trainer: bool = True,
    out_dir: Path | None = None,
) -> str:
    """Benchmark each strategy with both loops, print the table and write it (markdown + JSON).

    Every (strategy, loop) runs in a fresh process: in a shared one, memory freed by an earlier
    run is kept by the allocator and reused, which made later runs look leaner than they are.
    """
    bench = Bench(overrides, strategies, warmup, steps, eval_samples)  # tokenises once, for the workers' cache
    rates = {"bf16": matmul_flops(bench.device, torch.bfloat16), "fp32": matmul_flops(bench.device, torch.float32)}
    loops = ["ours", "trainer"] if with_trainer else ["ours"]
    rows: dict[str, dict[str, dict[str, Any]]] = {strategy: {} for strategy in strategies}
    spawn = multiprocessing.get_context("spawn")
    for strategy in strategies:
        for loop in loops:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as worker:
                rows[strategy][loop] = worker.submit(_measure, bench, strategy, loop).result()
    text = render(rows, rates, bench)
    shutil.rmtree(bench.workdir, ignore_errors=True)  # the loops' logs and checkpoints: not results
    if out_dir is not None:
        write_atomic(out_dir / "bench.md", text)
        record = {"machine": machine(), "overrides": list(overrides), "matmul_flops": rates, "runs": rows}
        write_atomic(out_dir / "bench.json", json.dumps(record, indent=2))
    return text
