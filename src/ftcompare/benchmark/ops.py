"""`bench.py --ops`: where a training step's time goes, op by op, for each strategy on the same batches.

Each strategy's module, built as `train.py` builds it (gradual in its first stage, as the bench times it), takes the
same batches of the run's training loader (the two longest first) in a plain loop: forward under the run's precision,
backward, clipping, the optimizer step. The steps are timed without the profiler first, then profiled; the table
gives each op's own time per step (`torch.profiler`, self CPU time), so the strategies' differences show by op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile

from ftcompare.benchmark.clock import sync
from ftcompare.benchmark.loops import Bench, in_first_stage
from ftcompare.builders import build_module

Batch = dict[str, torch.Tensor]
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def _step_fn(bench: Bench, strategy: str) -> Callable[[Batch], None]:
    """One training step of the strategy's module with its configured optimizer and clipping."""
    cfg = bench.compose(strategy)
    module = in_first_stage(build_module(cfg)).to(bench.device).train()
    optimizer = instantiate(cfg.optimizer)(module.param_groups(module.named_parameters()))
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    autocast = torch.autocast(bench.device.type, dtype=torch.bfloat16, enabled="bf16" in str(cfg.trainer.precision))

    def step(batch: Batch) -> None:
        with autocast:
            logits = module(batch)
        F.cross_entropy(logits.float(), batch["labels"]).backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.trainer.gradient_clip_val or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def op_times(bench: Bench, strategy: str, batches: Sequence[Batch], warmup: int) -> tuple[float, pd.Series]:
    """(ms per step without the profiler, each op's self time in ms per step) over `batches` after `warmup` steps."""
    torch.manual_seed(0)
    step = _step_fn(bench, strategy)
    for batch in batches[:warmup]:
        step(batch)
    sync(bench.device)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    sync(bench.device)
    timed = len(batches) - warmup
    wall_ms = (time.perf_counter() - start) * 1000 / timed
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for batch in batches[warmup:]:
            step(batch)
        sync(bench.device)
    ops = pd.Series({e.key: e.self_cpu_time_total / 1000 / timed for e in prof.key_averages()})
    return wall_ms, ops


def run_ops(bench: Bench, warmup: int, steps: int, rows: int = 20) -> str:
    """The per-op table for the bench's strategies, as markdown: ms per step, each strategy against the first."""
    loader = iter(bench.datamodule.train_dataloader())
    batches = [{k: v.to(bench.device) for k, v in next(loader).items()} for _ in range(warmup + steps)]
    walls, columns = {}, {}
    for strategy in bench.strategies:
        walls[strategy], columns[strategy] = op_times(bench, strategy, batches, warmup)
    table = pd.DataFrame(columns).fillna(0.0)
    matmul_share = table.loc[table.index.intersection(MATMULS)].sum() / table.sum()
    table = table.loc[table.max(axis=1).sort_values(ascending=False).index[:rows]]
    table.loc["step, without the profiler"] = pd.Series(walls)
    first = bench.strategies[0]
    lengths = [b["input_ids"].shape[1] for b in batches[warmup:]]
    ratios = ", ".join(f"{s} {walls[s] / walls[first]:.2f}x" for s in bench.strategies[1:])
    floors = ", ".join(f"{s} {matmul_share[s]:.0%} ({matmul_share[s] * walls[s]:.0f} ms)" for s in bench.strategies)
    cfg = bench.base_cfg
    overrides = " ".join(bench.overrides) or "none"
    return (
        f"Self time per training step (ms), {steps} steps after {warmup} of warm-up, the same batches for every "
        f"strategy (lengths {lengths}): batch {cfg.data.batch_size}, max_length {cfg.data.max_length}, precision "
        f"{cfg.trainer.precision}, {torch.get_num_threads()} threads. Overrides: {overrides}.\n\n"
        f"{table.round(1).to_markdown()}\n\nStep time against {first}: {ratios or 'one strategy'}.\n"
        f"Matmuls ({', '.join(MATMULS)}) in the profiled self time: {floors}: the step's time if nothing else "
        "took any.\n"
    )
