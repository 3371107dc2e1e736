"""`make bench`: our Lightning loop against Hugging Face `Trainer` on the same examples, per strategy.

Per strategy, both train the module the strategy class builds on the same tokenised split with the same
batch size, max_length, precision, learning rate and clipping. Steady-state throughput is measured between
the end of the last warm-up step and the end of the last step, so data loading, logging and callbacks count,
start-up does not. Memory is the peak above the level before the model was built (CPU: resident set size;
GPU: allocated memory). Full fine-tuning's achieved FLOP/s is set against the matmul rates measured in the
same process: fp32's, and bf16's where the runs use bf16 (on a CPU without bf16 units bf16 is emulated, slowly:
it is not measured there).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from ftcompare import CONF_DIR
from ftcompare.benchmark.clock import matmul_flops
from ftcompare.benchmark.loops import Bench
from ftcompare.benchmark.table import Study, machine, render
from ftcompare.io import write_atomic


def _study_params() -> Any:
    return OmegaConf.load(CONF_DIR / "experiment" / "compare.yaml").hydra.sweeper.params


def study_strategies() -> list[str]:
    """The strategies `experiment=compare` sweeps: what the bench times unless told otherwise."""
    return str(_study_params().strategy).split(",")


def study(bench: Bench) -> Study:
    """The study's seeds from experiment=compare; each strategy's epochs (and gradual's first stage) and the
    splits from the bench's own settings."""
    configs = {strategy: bench.compose(strategy) for strategy in study_strategies()}
    data = bench.base_cfg.data
    return Study(
        study_strategies(),
        len(str(_study_params().seed).split(",")),
        {strategy: int(cfg.trainer.max_epochs) for strategy, cfg in configs.items()},
        data.train_size,
        data.val_size,
        data.test_size,
        {s: float(cfg.strategy.head_only) for s, cfg in configs.items() if "head_only" in cfg.strategy},
    )


def _measure(bench: Bench, strategy: str, loop: str) -> dict[str, Any]:
    return bench.ours(strategy) if loop == "ours" else bench.hf_trainer(strategy)


def run(
    overrides: Sequence[str],
    strategies: Sequence[str],
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
    dtypes = {"fp32": torch.float32}
    if str(bench.base_cfg.trainer.precision).startswith("bf16"):
        dtypes = {"bf16": torch.bfloat16, **dtypes}
    rates = {name: matmul_flops(bench.device, dtype) for name, dtype in dtypes.items()}
    loops = ["ours", "trainer"] if with_trainer else ["ours"]
    rows: dict[str, dict[str, dict[str, Any]]] = {strategy: {} for strategy in strategies}
    spawn = multiprocessing.get_context("spawn")
    for strategy in strategies:
        for loop in loops:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as worker:
                rows[strategy][loop] = worker.submit(_measure, bench, strategy, loop).result()
    precision = next(iter(rows.values()))["ours"]["precision"]
    text = render(rows, rates, str(bench.base_cfg.model.name_or_path), bench.describe(precision), study(bench))
    shutil.rmtree(bench.workdir, ignore_errors=True)  # the loops' logs and checkpoints: not results
    if out_dir is not None:
        write_atomic(out_dir / "bench.md", text)
        record = {"machine": machine(), "overrides": list(overrides), "matmul_flops": rates, "runs": rows}
        write_atomic(out_dir / "bench.json", json.dumps(record, indent=2))
    return text
